"""preview / up / refresh / destroy through the Automation API, with the engine's events printed live.

The Python SDK runs the inline program `k8s_ha.program.pulumi_program` in this process, so no
`pulumi-language-python` binary is needed: only the `pulumi` CLI and the provider plugins. Before
the engine starts, the stack is validated (exit 2, every problem listed) and every missing plugin
is installed through the pulumi CLI, or named with the CLI's reason when that fails (exit 3). The
project directory (its Pulumi.yaml, stack files and file-backend state) is the caller's, never the
package's own location. Failures end in their cause: an unreachable hypervisor by name and URI, a node
SSH cannot reach by name and address, a missing passphrase by the variables that give it.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from k8s_ha.cli import causes, exits
from k8s_ha.cli.project import ProjectError, cli_path, find_project_dir, local_backend_env
from k8s_ha.model.errors import SpecError
from k8s_ha.placement.changes import deployed_change_problems
from k8s_ha.placement.plan import Plan, load_plan

if TYPE_CHECKING:  # the SDK is imported when an action runs, not when the CLI starts
    from pulumi.automation import PulumiCommand

__all__ = ["ACTIONS", "EXIT_ENGINE", "EXIT_INVALID", "EXIT_PLUGINS", "EventPrinter", "RunResult", "cli_path",
           "local_backend_env", "own_type", "pulumi_command", "run"]

ACTIONS = ("preview", "up", "refresh", "destroy")
EXIT_INVALID, EXIT_PLUGINS, EXIT_ENGINE = exits.BAD_INPUT, exits.MISSING, exits.FAILED
SYMBOLS = {"create": "+", "update": "~", "delete": "-", "replace": "+-", "create-replacement": "++",
           "delete-replaced": "--", "read": ">", "refresh": "~", "same": " "}


@dataclass
class EventPrinter:
    """Renders the engine's event stream as the CLI's non-interactive display does: one line per step."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    preview: bool = True
    hypervisor_uris: dict[str, str] = field(default_factory=dict)
    node_names: tuple[str, ...] = ()
    vm_names: tuple[str, ...] = ()  # the nodes the stack makes as VMs (not existing hosts)
    started: float = field(default_factory=time.monotonic)
    providers: dict[str, str] = field(default_factory=dict)  # resource URN -> provider URN
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)
    changes: dict[str, int] = field(default_factory=dict)

    def _line(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {text}", file=self.out, flush=True)

    def __call__(self, event: Any) -> None:
        if event.resource_pre_event is not None:
            meta = event.resource_pre_event.metadata
            # a provider reference is "URN::ID", and URNs contain "::" themselves
            self.providers[meta.urn] = meta.provider.rsplit("::", 1)[0] if meta.provider else ""
            op = getattr(meta.op, "value", str(meta.op))
            if op == "same":
                self.unchanged += 1
                return
            suffix = f" [diff: {', '.join(meta.diffs)}]" if meta.diffs else ""
            self._line(f" {SYMBOLS.get(op, '?'):>2} {meta.type} {_name(meta.urn)} {op}{suffix}")
        elif event.res_outputs_event is not None and not self.preview:
            meta = event.res_outputs_event.metadata
            op = getattr(meta.op, "value", str(meta.op))
            if op != "same":
                self._line(f" {SYMBOLS.get(op, '?'):>2} {meta.type} {_name(meta.urn)} {op} done")
        elif event.res_op_failed_event is not None:
            meta = event.res_op_failed_event.metadata
            self._line(f" !! {meta.type} {_name(meta.urn)} failed")
        elif event.diagnostic_event is not None:
            self._diagnostic(event.diagnostic_event)
        elif event.summary_event is not None:
            summary = event.summary_event
            self.changes = {getattr(k, "value", str(k)): v for k, v in summary.resource_changes.items()}
            parts = ", ".join(f"{n} {op}" for op, n in sorted(self.changes.items()))
            self._line(f"summary: {parts or 'no changes'} ({summary.duration_seconds} s in the engine)")

    def _diagnostic(self, diag: Any) -> None:
        message = (diag.message or "").strip()
        if not message or diag.ephemeral:
            return
        where = _name(diag.urn) if diag.urn else "stack"
        severity = diag.severity
        if severity == "error":
            message = self.summary(diag.urn or "", message)
            self.errors.append(f"{where}: {message}")
        if severity in ("error", "warning", "info") or (severity == "info#err"):
            self._line(f"{severity}: {where}: {message}")

    def summary(self, urn: str, message: str) -> str:
        """An error as the user acts on it: the hypervisor or node it concerns, ending in its cause."""
        hypervisor = self.hypervisor_of(urn)
        if hypervisor is not None:
            name, uri = hypervisor
            return f"hypervisor {name} ({uri}) cannot be used: {causes.cause(message)}"
        unreachable = causes.ssh_unreachable(_name(urn), message, self.node_names, self.vm_names) if urn else None
        if unreachable is not None:
            return unreachable
        return causes.passphrase_problem(message) or message

    def hypervisor_of(self, urn: str) -> tuple[str, str] | None:
        """The hypervisor behind a failed libvirt provider, or behind a resource that uses one."""
        provider = urn if _is_libvirt_provider(urn) else self.providers.get(urn, "")
        if not _is_libvirt_provider(provider):
            return None
        name = _name(provider).removeprefix("hv-")
        return name, self.hypervisor_uris.get(name, "?")


def own_type(urn: str) -> str:
    """A resource's own type from its URN: the third "::" field, which the engine qualifies with the
    parents' types ("Parent$pulumi:providers:libvirt"); "" for anything that is not a URN."""
    fields = urn.split("::")
    return fields[2].rsplit("$", 1)[-1] if len(fields) >= 4 else ""


def _is_libvirt_provider(urn: str) -> bool:
    return own_type(urn) == "pulumi:providers:libvirt"


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _passphrase_env(env: dict[str, str]) -> dict[str, str]:
    """Ask once for the stack's passphrase when none is set (the engine cannot prompt through us)."""
    given = {**os.environ, **env}
    if given.get("PULUMI_CONFIG_PASSPHRASE") is not None or given.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        return {}
    if not sys.stdin.isatty():
        return {}  # the engine names the missing passphrase itself
    return {"PULUMI_CONFIG_PASSPHRASE": getpass.getpass("stack secrets passphrase: ")}


@dataclass
class RunResult:
    exit_code: int
    printer: EventPrinter | None = None
    outputs: dict[str, Any] = field(default_factory=dict)


def run(action: str, stack: str, *, project_dir: Path | None = None, out: TextIO | None = None,
        extra_env: dict[str, str] | None = None, on_event: Callable[[Any], None] | None = None,
        plan_file: Path | None = None, expect_no_changes: bool = False,
        exclude: Sequence[str] = (), continue_on_error: bool = False) -> RunResult:
    """Validate, provide the plugins, then run `action` on `stack` in `project_dir` with live output.
    `project_dir`: holds Pulumi.<stack>.yaml (default: the nearest directory with a Pulumi.yaml from the
    current directory upward); the file backend's state goes under it unless a backend is chosen.
    `exclude`: URNs left alone together with everything that depends on them (`pulumi --exclude
    --exclude-dependents`), e.g. the machines of a layer that cannot be built where this runs.
    `continue_on_error`: an `up` goes on with everything that does not depend on a failed resource
    (`pulumi up --continue-on-error`), so what it creates does not depend on which failure came first."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    out = sys.stdout if out is None else out  # at call time: whatever stdout is then
    if project_dir is None:
        try:
            project_dir = find_project_dir(Path.cwd())
        except ProjectError as error:
            print(f"{action}: {error}", file=sys.stderr)
            return RunResult(EXIT_INVALID)
    stack_file = project_dir / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        print(f"no stack file {stack_file.name} in {project_dir}", file=sys.stderr)
        return RunResult(EXIT_INVALID)
    try:
        plan = load_plan(stack_file)
    except SpecError as error:
        print(f"{stack_file.name}: {error.render()}", file=sys.stderr)
        return RunResult(EXIT_INVALID)
    spec = plan.spec

    env = {"PULUMI_SKIP_UPDATE_CHECK": "true", **(extra_env or {})}
    pulumi_cli = cli_path(project_dir)
    missing_prerequisite = _provide_plugins(action, pulumi_cli, out, env)
    if missing_prerequisite is not None:
        print(missing_prerequisite, file=sys.stderr)
        return RunResult(EXIT_PLUGINS)
    assert pulumi_cli is not None  # _provide_plugins refuses without one

    from pulumi import automation as auto

    from k8s_ha.program import pulumi_program

    if "PULUMI_BACKEND_URL" not in env:
        env.update(local_backend_env(project_dir))
    env.update(_passphrase_env(env))
    printer = EventPrinter(out=out, preview=action == "preview",
                           hypervisor_uris={h.name: h.uri for h in spec.hypervisors},
                           node_names=tuple(node.name for node in plan.placement.nodes),
                           vm_names=tuple(node.name for node in plan.placement.nodes if node.is_vm))

    def events(event: Any) -> None:
        printer(event)
        if on_event is not None:
            on_event(event)

    workspace = auto.LocalWorkspaceOptions(work_dir=str(project_dir), env_vars=env,
                                           pulumi_command=pulumi_command(pulumi_cli))
    try:
        target = auto.create_or_select_stack(stack_name=stack, project_name="k8s-ha",
                                             program=pulumi_program, opts=workspace)
        print(f"== {action} of stack {stack} ({len(spec.hypervisors)} hypervisor(s))", file=out, flush=True)
        if action in ("preview", "up") and (problems := _deployed_change_problems(target, plan)):
            print(f"{stack_file.name}: refused against what the stack runs:\n  " + "\n  ".join(problems),
                  file=sys.stderr)
            return RunResult(EXIT_INVALID, printer)
        left_out: dict[str, Any] = {"exclude": list(exclude), "exclude_dependents": True} if exclude else {}
        if action == "preview":
            target.preview(on_event=events, plan=str(plan_file) if plan_file else None,
                           expect_no_changes=expect_no_changes or None, **left_out)
        elif action == "up":
            target.up(on_event=events, show_secrets=False, expect_no_changes=expect_no_changes or None,
                      continue_on_error=continue_on_error or None, **left_out)
        elif action == "refresh":
            target.refresh(on_event=events, **left_out)
        else:  # destroy removes everything: there is nothing to leave out
            target.destroy(on_event=events)
        outputs = {k: ("[secret]" if v.secret else v.value) for k, v in target.outputs().items()}
    except auto.errors.CommandError as error:
        print(failure_text(printer, error), file=sys.stderr)
        return RunResult(EXIT_ENGINE, printer)
    return RunResult(0, printer, outputs)


def _deployed_change_problems(target: Any, plan: Plan) -> list[str]:
    """What the stack cannot change from its last deployment (its outputs), before the engine runs."""
    outputs = {key: value.value for key, value in target.outputs().items()}
    return deployed_change_problems(outputs, plan.spec, plan.placement)


def pulumi_command(pulumi_cli: str) -> PulumiCommand | None:
    """The Automation API's handle on a CLI that is not on PATH (the one scripts/engine built, which
    is newer than the SDK: no version check); None lets it find `pulumi` on PATH itself."""
    from pulumi import automation as auto

    if shutil.which("pulumi"):
        return None
    return auto.PulumiCommand(root=str(Path(pulumi_cli).parent.parent), skip_version_check=True)


def _provide_plugins(action: str, pulumi_cli: str | None, out: TextIO, env: dict[str, str]) -> str | None:
    """Install the plugins the program needs and lacks; the message to print (exit 3) when the CLI is
    missing or a plugin could not be installed, else None. A refresh reads only what exists, with the
    plugins that created it, so it is not held up by plugins the program would need."""
    from k8s_ha.cli.plugins import install, missing_message, missing_plugins  # imports the provider SDKs

    missing = missing_plugins() if action != "refresh" else []
    no_cli = "no pulumi CLI: put it on PATH or run scripts/engine (docs/engine.md)"
    if pulumi_cli is None:
        return f"{missing_message(missing)}\n{no_cli}" if missing else no_cli
    if not missing:
        return None
    failed = install(missing, pulumi_cli, out, env)
    if failed:
        return missing_message(sorted(failed), failed)
    return None


def failure_text(printer: EventPrinter, error: Exception) -> str:
    """What went wrong, ending in its cause: the engine's diagnostics, else the CLI's own stderr (one
    sentence for a passphrase problem), never the raw code/stdout/stderr dump."""
    if printer.errors:
        return "failed:\n" + "\n".join(f"  {e}" for e in printer.errors)
    stderr = causes.cli_stderr(error)
    sentence = causes.passphrase_problem(stderr)
    if sentence is not None:
        return f"failed: {sentence}"
    lines = [line.rstrip() for line in stderr.splitlines() if line.strip()][-15:]
    return "failed:\n  " + "\n  ".join(lines or [f"the pulumi CLI failed and said nothing ({error!r})"])


def pulumi_version(pulumi_cli: str) -> str:
    return subprocess.run([pulumi_cli, "version"], capture_output=True, text=True, check=True).stdout.strip()
