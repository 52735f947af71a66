"""`python -m k8s_ha`: check, plan and render a stack file without the engine; preview, up, refresh and
destroy it with the engine; build the guests' base image; make, check and serve the offline bundle.
One parser for all of them, so `--help` lists every command and every option explains itself."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from k8s_ha.cli import bundle_cmd, exits, image, render_out
from k8s_ha.cli.project import PROJECT_FILE, ProjectError, project_dir_of
from k8s_ha.model import versions
from k8s_ha.model.certificates import expiry_warnings
from k8s_ha.model.errors import SpecError
from k8s_ha.model.spec import StackSpec
from k8s_ha.placement.changes import deployed_change_problems
from k8s_ha.placement.plan import load_plan
from k8s_ha.placement.report import format_plan, plan_data

ENGINE_ACTIONS = {
    "preview": "show what up would change, changing nothing",
    "up": "create or update every resource of the stack",
    "refresh": "read the real state of the stack's resources back into its state",
    "destroy": "delete every resource of the stack",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m k8s_ha", description=__doc__, epilog=exits.EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_offline(sub)
    _add_engine(sub)
    image_cmd = sub.add_parser("image", help="build the guests' Debian base image (qcow2 + sha256)",
                               description=image.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    image.add_arguments(image_cmd)
    image_cmd.set_defaults(handler=image.run)
    bundle_cmd.add_commands(sub)
    return parser


def _add_offline(sub: Any) -> None:
    for name, help_text in (
        ("validate", "check every rule of a stack file; exit 2 listing every problem"),
        ("plan", "show the nodes, their placement and the fault-tolerance matrix"),
        ("render", "write every file each host receives (secrets as placeholders)"),
    ):
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("--stack-file", type=Path, required=True, help="the stack file (Pulumi.<stack>.yaml)")
        if name == "plan":
            cmd.add_argument("--json", action="store_true", help="print the plan as JSON for scripts")
        if name in ("validate", "plan"):
            cmd.add_argument("--stack-outputs", type=Path, metavar="FILE",
                             help="the deployed stack's outputs (`pulumi stack output --json > FILE`): warn "
                                  "about certificates inside pki.earlyRenewalHours"
                                  + ("; refuse changes the running cluster cannot take" if name == "validate"
                                     else ""))
        if name == "validate":
            cmd.add_argument("--running-kubernetes", metavar="VERSION",
                             help="the version the cluster runs (`pulumi stack output kubernetesVersion`): "
                                  "refuse a downgrade or a skipped minor from it")
        if name == "render":
            cmd.add_argument("--out", type=Path, required=True,
                             help=f"output directory: new, empty, or an earlier render's (holds "
                                  f"{render_out.MARKER}), which is replaced whole")
        cmd.set_defaults(handler=_offline)


def _add_engine(sub: Any) -> None:
    for name, help_text in ENGINE_ACTIONS.items():
        asks = " (asks for the stack name unless --yes)" if name == "destroy" else ""
        cmd = sub.add_parser(name, help=f"{help_text}, with the Pulumi engine{asks}",
                             description=f"{help_text}{asks}. Validates the stack file first, installs missing "
                                         "provider plugins, then runs the engine with live progress.")
        cmd.add_argument("--stack", required=True, help="the stack name: the project directory holds "
                                                         "Pulumi.<stack>.yaml")
        cmd.add_argument("--project-dir", type=Path,
                         help=f"the directory holding {PROJECT_FILE} and the stack file (default: the nearest "
                              f"one from the current directory upward); state goes to its .cache/state "
                              f"unless PULUMI_BACKEND_URL or a login says otherwise")
        if name == "destroy":
            cmd.add_argument("--yes", action="store_true",
                             help="destroy without asking (needed where there is no terminal to ask on)")
        cmd.set_defaults(handler=_engine)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    code: int = args.handler(args)
    return code


def _offline(args: argparse.Namespace) -> int:
    try:
        plan = load_plan(args.stack_file)
    except SpecError as exc:
        print(f"{args.stack_file}: {exc.render()}", file=sys.stderr)
        return exits.BAD_INPUT
    spec, placement = plan.spec, plan.placement
    deployed: dict[str, Any] = {}
    if getattr(args, "stack_outputs", None) is not None:
        try:
            deployed = json.loads(args.stack_outputs.read_text())
        except (OSError, ValueError) as exc:
            print(f"{args.stack_outputs}: cannot read the stack's outputs ({exc}); write them with "
                  "`pulumi stack output --json`", file=sys.stderr)
            return exits.BAD_INPUT
        if not isinstance(deployed, dict):
            print(f"{args.stack_outputs}: not the JSON object `pulumi stack output --json` writes", file=sys.stderr)
            return exits.BAD_INPUT
    if args.command == "validate":
        running = args.running_kubernetes
        if running and (problem := versions.upgrade_problem(running, spec.versions.kubernetes)) is not None:
            print(f"{args.stack_file}: versions.kubernetes: {problem}", file=sys.stderr)
            return exits.BAD_INPUT
        if problems := deployed_change_problems(deployed, spec, placement):
            print(f"{args.stack_file}: refused against what the stack runs:\n  " + "\n  ".join(problems),
                  file=sys.stderr)
            return exits.BAD_INPUT
        print(f"{args.stack_file}: valid ({len(placement.nodes)} nodes, "
              f"{len(placement.domains)} failure domain(s))")
        for warning in [*placement.warnings, *_certificate_warnings(deployed, spec)]:
            print(f"WARNING: {warning}", file=sys.stderr)
        return exits.OK
    if args.command == "plan":
        print(json.dumps(plan_data(spec, placement), indent=2) if args.json else format_plan(spec, placement))
        for warning in _certificate_warnings(deployed, spec):
            print(f"WARNING: {warning}", file=sys.stderr)
        return exits.OK
    from k8s_ha.render.tree import write_tree  # imported late: templates only when rendering

    try:
        render_out.prepare(args.out)
    except render_out.OutDirError as exc:
        print(f"render: {exc}", file=sys.stderr)
        return exits.BAD_INPUT
    written = write_tree(spec, placement, args.out)
    print(f"wrote {written} files under {args.out}")
    return exits.OK


def _certificate_warnings(deployed: dict[str, Any], spec: StackSpec) -> list[str]:
    expiries = deployed.get("certificates")
    if not isinstance(expiries, dict):
        return []
    return expiry_warnings(expiries, spec.pki.early_renewal_hours, dt.datetime.now(dt.UTC))


def _engine(args: argparse.Namespace) -> int:
    try:
        project_dir = project_dir_of(args.project_dir)
    except ProjectError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return exits.BAD_INPUT
    stack_file = project_dir / f"Pulumi.{args.stack}.yaml"
    if not stack_file.is_file():
        print(f"{args.command}: no stack file {stack_file.name} in {project_dir}", file=sys.stderr)
        return exits.BAD_INPUT
    if args.command == "destroy" and not args.yes and not confirm_destroy(args.stack):
        return exits.BAD_INPUT
    from k8s_ha.cli.engine import run  # imported late: the engine and provider SDKs only when used

    return run(args.command, args.stack, project_dir=project_dir).exit_code


def confirm_destroy(stack: str) -> bool:
    """Ask for the stack's name before destroying it; with no terminal to ask on, refuse."""
    if not sys.stdin.isatty():
        print(f"destroy: refusing to destroy stack {stack} without confirmation, and there is no terminal to "
              "ask on: pass --yes to destroy it", file=sys.stderr)
        return False
    print(f"destroy deletes every resource of stack {stack} (machines and their disks included).\n"
          f"Type the stack name ({stack}) to go on: ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip()
    if answer != stack:
        print(f"destroy: cancelled ({answer!r} is not {stack!r}); nothing was destroyed", file=sys.stderr)
        return False
    return True
