"""preview / up / refresh / destroy through the Automation API, with the engine's events printed live.

The Python SDK runs the inline program `k8s_ha.program.pulumi_program` in this process, so no
`pulumi-language-python` binary is needed: only the `pulumi` CLI and the provider plugins. Before
the engine starts, the stack is validated (exit 2, every problem listed) and every missing plugin
is named (exit 3); an unreachable hypervisor is reported by name and URI, not as a provider trace.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from k8s_ha.model.errors import SpecError
from k8s_ha.placement.plan import load_plan

ROOT = Path(__file__).resolve().parents[2]
ACTIONS = ("preview", "up", "refresh", "destroy")
EXIT_INVALID, EXIT_PLUGINS, EXIT_ENGINE = 2, 3, 1
SYMBOLS = {"create": "+", "update": "~", "delete": "-", "replace": "+-", "create-replacement": "++",
           "delete-replaced": "--", "read": ">", "refresh": "~", "same": " "}


def cli_path(root: Path = ROOT) -> str | None:
    """`pulumi` on PATH, else the one scripts/engine built into .cache/engine/bin."""
    found = shutil.which("pulumi")
    if found:
        return found
    built = root / ".cache/engine/bin/pulumi"
    return str(built) if built.is_file() else None


def local_backend_env(root: Path = ROOT) -> dict[str, str]:
    """A file backend under .cache/state unless the user chose a backend or is logged in."""
    if os.environ.get("PULUMI_BACKEND_URL"):
        return {}
    credentials = Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi") / "credentials.json"
    if credentials.is_file() and '"current": ""' not in credentials.read_text():
        return {}
    state = root / ".cache/state"
    state.mkdir(parents=True, exist_ok=True)
    return {"PULUMI_BACKEND_URL": state.as_uri()}


@dataclass
class EventPrinter:
    """Renders the engine's event stream as the CLI's non-interactive display does: one line per step."""

    out: TextIO = sys.stdout
    preview: bool = True
    hypervisor_uris: dict[str, str] = field(default_factory=dict)
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
            hypervisor = self.hypervisor_of(diag.urn or "")
            if hypervisor is not None:
                name, uri = hypervisor
                message = f"hypervisor {name} ({uri}) cannot be used: {_cause(message)}"
            self.errors.append(f"{where}: {message}")
        if severity in ("error", "warning", "info") or (severity == "info#err"):
            self._line(f"{severity}: {where}: {message}")

    def hypervisor_of(self, urn: str) -> tuple[str, str] | None:
        """The hypervisor behind a failed libvirt provider, or behind a resource that uses one."""
        provider = urn if _is_libvirt_provider(urn) else self.providers.get(urn, "")
        if not _is_libvirt_provider(provider):
            return None
        name = _name(provider).removeprefix("hv-")
        return name, self.hypervisor_uris.get(name, "?")


def _cause(message: str) -> str:
    """The first line that says something: providers wrap errors in "1 error occurred:" and "* " bullets."""
    lines = [line.strip().removeprefix("* ").strip() for line in message.splitlines()]
    useful = [line for line in lines if line and not re.fullmatch(r"\d+ errors? occurred:?", line)]
    return useful[0] if useful else message.strip()


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


def run(action: str, stack: str, *, project_dir: Path = ROOT, out: TextIO = sys.stdout,
        extra_env: dict[str, str] | None = None, on_event: Callable[[Any], None] | None = None,
        plan_file: Path | None = None, expect_no_changes: bool = False,
        exclude: Sequence[str] = (), continue_on_error: bool = False) -> RunResult:
    """Validate, check plugins, then run `action` on `stack` in `project_dir` with live output.
    `exclude`: URNs left alone together with everything that depends on them (`pulumi --exclude
    --exclude-dependents`), e.g. the machines of a layer that cannot be built where this runs.
    `continue_on_error`: an `up` goes on with everything that does not depend on a failed resource
    (`pulumi up --continue-on-error`), so what it creates does not depend on which failure came first."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    stack_file = project_dir / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        print(f"no stack file {stack_file.name} in {project_dir}", file=sys.stderr)
        return RunResult(EXIT_INVALID)
    try:
        spec = load_plan(stack_file).spec
    except SpecError as error:
        print(f"{stack_file.name}: {error.render()}", file=sys.stderr)
        return RunResult(EXIT_INVALID)

    from k8s_ha.cli.plugins import missing_message, missing_plugins  # imports the provider SDKs

    if action != "refresh" and (missing := missing_plugins()):
        print(missing_message(missing), file=sys.stderr)
        return RunResult(EXIT_PLUGINS)
    pulumi_cli = cli_path(ROOT)
    if pulumi_cli is None:
        print("no pulumi CLI: put it on PATH or run scripts/engine (docs/engine.md)", file=sys.stderr)
        return RunResult(EXIT_PLUGINS)

    from pulumi import automation as auto

    from k8s_ha.program import pulumi_program

    env = {"PULUMI_SKIP_UPDATE_CHECK": "true", **(extra_env or {})}
    if "PULUMI_BACKEND_URL" not in env:
        env.update(local_backend_env(ROOT))
    env.update(_passphrase_env(env))
    printer = EventPrinter(out=out, preview=action == "preview",
                           hypervisor_uris={h.name: h.uri for h in spec.hypervisors})

    def events(event: Any) -> None:
        printer(event)
        if on_event is not None:
            on_event(event)

    workspace = auto.LocalWorkspaceOptions(
        work_dir=str(project_dir), env_vars=env,
        pulumi_command=auto.PulumiCommand(root=str(Path(pulumi_cli).parent.parent), skip_version_check=True)
        if not shutil.which("pulumi") else None)
    try:
        target = auto.create_or_select_stack(stack_name=stack, project_name="k8s-ha",
                                             program=pulumi_program, opts=workspace)
        print(f"== {action} of stack {stack} ({len(spec.hypervisors)} hypervisor(s))", file=out, flush=True)
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
        print(_failure_text(printer, error), file=sys.stderr)
        return RunResult(EXIT_ENGINE, printer)
    return RunResult(0, printer, outputs)


def _failure_text(printer: EventPrinter, error: Exception) -> str:
    """What went wrong, from the engine's diagnostics; the CLI's stderr only when they say nothing."""
    if printer.errors:
        return "failed:\n" + "\n".join(f"  {e}" for e in printer.errors)
    stderr = getattr(error, "stderr", "") or str(error)
    return "failed:\n  " + "\n  ".join(line for line in stderr.strip().splitlines()[-15:])


def pulumi_version(pulumi_cli: str) -> str:
    return subprocess.run([pulumi_cli, "version"], capture_output=True, text=True, check=True).stdout.strip()
