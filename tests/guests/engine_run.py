"""One real-engine action, run inside the lab network namespace: the command provider dials the
guests, which only exist on the namespace's bridge. The test starts this module through
`LabHypervisors.netns_argv`; it prints the live display and, last, one line `OPS {urn: op}`.

    python -m tests.guests.engine_run ACTION PROJECT_DIR STACK [--exclude URN]...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from k8s_ha.cli.engine import run

OPS_PREFIX = "OPS "


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
