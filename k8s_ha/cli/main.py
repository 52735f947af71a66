"""validate / plan / render a stack file without the Pulumi engine; preview / up / refresh / destroy with it.

Exit codes: 0 valid, 2 invalid configuration (every problem printed), 1 usage, I/O or engine failure,
3 a provider plugin or the Pulumi CLI is missing (nothing was run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from k8s_ha.cli.bundle_cmd import COMMANDS as BUNDLE_COMMANDS
from k8s_ha.cli.bundle_cmd import main as bundle_main
from k8s_ha.model.errors import SpecError
from k8s_ha.placement.plan import load_plan
from k8s_ha.placement.report import format_plan, plan_data


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in BUNDLE_COMMANDS:
        return bundle_main(argv)
    parser = argparse.ArgumentParser(prog="python -m k8s_ha", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("validate", "check every rule; exit 2 listing all problems"),
        ("plan", "nodes, placement and the fault-tolerance matrix"),
        ("render", "write every file each host receives (secrets as placeholders)"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--stack-file", type=Path, required=True, help="Pulumi.<stack>.yaml")
        if name == "plan":
            cmd.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "render":
            cmd.add_argument("--out", type=Path, required=True, help="output directory")
    for name in ("preview", "up", "refresh", "destroy"):
        cmd = sub.add_parser(name, help=f"pulumi {name} through the Automation API (no language host needed)")
        cmd.add_argument("--stack", required=True, help="stack name: Pulumi.<stack>.yaml")
    from k8s_ha.cli import image

    image.add_arguments(sub.add_parser("image", help="build the guests' Debian base image (qcow2 + sha256)"))
    args = parser.parse_args(argv)
    if args.command == "image":
        return image.run(args)
    if hasattr(args, "stack"):
        from k8s_ha.cli.engine import run  # imported late: the engine and provider SDKs only when used

        return run(args.command, args.stack).exit_code
    try:
        plan = load_plan(args.stack_file)
    except SpecError as exc:
        print(f"{args.stack_file}: {exc.render()}", file=sys.stderr)
        return 2
    spec, placement = plan.spec, plan.placement
    if args.command == "validate":
        print(f"{args.stack_file}: valid ({len(placement.nodes)} nodes, "
              f"{len(placement.domains)} failure domain(s))")
        for warning in placement.warnings:
            print(f"WARNING: {warning}", file=sys.stderr)
        return 0
    if args.command == "plan":
        if args.json:
            print(json.dumps(plan_data(spec, placement), indent=2))
        else:
            print(format_plan(spec, placement))
        return 0
    from k8s_ha.render.tree import write_tree  # imported late: templates only when rendering

    written = write_tree(spec, placement, args.out)
    print(f"wrote {written} files under {args.out}")
    return 0
