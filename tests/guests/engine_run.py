"""One real-engine action, run inside a lab network namespace: the command provider dials the
guests or node containers, which only exist on the namespace's bridge. The tests start this module
through `engine()` below with their lab's `netns_argv`; it prints the live display and, last, one
line `OPS {urn: op}`.

    python -m tests.guests.engine_run ACTION PROJECT_DIR STACK [--exclude URN]...
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k8s_ha.cli.engine import run

if TYPE_CHECKING:
    from tests.engine.conftest import Project

OPS_PREFIX = "OPS "
ROOT = Path(__file__).resolve().parents[2]
ENGINE_TIMEOUT_S = 2400


def engine(netns_argv: Callable[[list[str]], list[str]], project: Project, action: str,
           exclude: list[str] | None = None) -> tuple[int, dict[str, str], str]:
    """Run `action` in the lab namespace; exit code, URN -> operation, and the display."""
    exclude = exclude or []
    argv = [sys.executable, "-m", "tests.guests.engine_run", action, str(project.directory), project.stack,
            *[f"--exclude={urn}" for urn in exclude], *[f"--env={k}={v}" for k, v in project.env.items()]]
    started = time.monotonic()
    done = subprocess.run(netns_argv(argv), capture_output=True, text=True, cwd=ROOT, timeout=ENGINE_TIMEOUT_S,
                          check=False)
    print(f"engine {action}: exit {done.returncode} after {time.monotonic() - started:.0f} s")
    display = "\n".join(line for line in done.stdout.splitlines() if not line.startswith(OPS_PREFIX))
    print(display[-4000:], done.stderr[-4000:])
    ops_line = next((line for line in reversed(done.stdout.splitlines()) if line.startswith(OPS_PREFIX)), None)
    ops = json.loads(ops_line.removeprefix(OPS_PREFIX)) if ops_line else {}
    text = done.stdout + done.stderr
    return done.returncode, ops, text if done.returncode == 0 else lead_with_errors(text)


def lead_with_errors(text: str, limit: int = 40) -> str:
    """A failed run's text with its error lines first: a long assertion message is cut in the
    middle by CI logs, and the engine's reason sits between the resource lines and the summary."""
    errors = [line for line in text.splitlines()
              if re.search(r"\berror\b|failed attempts|exit status", line, re.IGNORECASE)]
    return "\n".join(["== the run's error lines:", *errors[:limit], "== the whole run:", text])


def ops_by_name(ops: dict[str, str]) -> dict[str, str]:
    """URN -> operation as resource name -> operation."""
    return {urn.rsplit("::", 1)[1]: op for urn, op in ops.items()}


def changed_names(ops: dict[str, str], existing: set[str]) -> dict[str, str]:
    """Resource name -> operation for every resource of `existing` the engine did not leave alone."""
    return ops_by_name({urn: op for urn, op in ops.items() if urn in existing and op != "same"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("action")
    parser.add_argument("project_dir", type=Path)
    parser.add_argument("stack")
    parser.add_argument("--exclude", action="append", default=[])
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the engine")
    args = parser.parse_args(argv)
    ops: dict[str, str] = {}

    def record(event: Any) -> None:
        if event.resource_pre_event is not None:
            meta = event.resource_pre_event.metadata
            ops[meta.urn] = getattr(meta.op, "value", str(meta.op))

    env = dict(item.split("=", 1) for item in args.env)
    result = run(args.action, args.stack, project_dir=args.project_dir, extra_env=env, on_event=record,
                 exclude=args.exclude)
    print(OPS_PREFIX + json.dumps(ops), flush=True)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
