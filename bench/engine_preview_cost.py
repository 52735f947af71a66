"""Preview cost on the real engine: our program vs an SDK-only program with as many trivial resources.

One run, three sizes (the prod stack with 10, 100 and 1,000 workers; hypervisors on libvirt's test
driver through a private daemon). For each size, in the same process and backend:
  - ours:    `python -m k8s_ha preview` (k8s_ha.cli.engine.run, Automation API, inline program)
  - trivial: an inline program registering the same number of `random.RandomId` (byte_length 8)
  - empty:   an inline program registering nothing (the engine's and the CLI's fixed cost)
and, for where the time goes, the program alone under the mock monitor (no engine, no providers).
Prints seconds and ratios; writes bench/results/engine_preview_cost.json. Needs root, libvirtd,
the pulumi CLI and every plugin (skips with the missing names otherwise).
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.stacks import SIZES, prod_with_workers  # noqa: E402
from k8s_ha.cli.engine import run  # noqa: E402
from k8s_ha.cli.plugins import missing_message, missing_plugins  # noqa: E402
from tests.engine.conftest import PASSPHRASE, make_project, on_hypervisor  # noqa: E402
from tests.engine.testdriver import TestDriverDaemon  # noqa: E402
from tests.unit.harness import run_program  # noqa: E402

OUT = ROOT / "bench/results/engine_preview_cost.json"


def inline_preview(directory: Path, stack: str, count: int) -> float:
    """Preview an SDK-only inline program with `count` trivial resources; seconds of wall time."""
    import pulumi_random as random
    from pulumi import automation as auto

    def program() -> None:
        for i in range(count):
            random.RandomId(f"r{i}", byte_length=8)

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "state").mkdir(exist_ok=True)
    (directory / "Pulumi.yaml").write_text("name: trivial\nruntime: python\n")
    env = {"PULUMI_BACKEND_URL": (directory / "state").as_uri(), "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
           "PULUMI_SKIP_UPDATE_CHECK": "true"}
    stack_ref = auto.create_or_select_stack(stack_name=stack, project_name="trivial", program=program,
                                            opts=auto.LocalWorkspaceOptions(work_dir=str(directory), env_vars=env))
    start = time.perf_counter()
    result = stack_ref.preview()
    elapsed = time.perf_counter() - start
    created = (result.change_summary or {}).get(auto.OpType.CREATE, 0)
    assert created >= count, f"trivial program created {created}, expected {count}"
    return elapsed


def ours(directory: Path, config: dict[str, Any]) -> tuple[float, int]:
    project = make_project(directory, "bench", config)
    out = io.StringIO()
    start = time.perf_counter()
    result = run("preview", "bench", project_dir=project.directory, out=out, extra_env=project.env)
    elapsed = time.perf_counter() - start
    if result.exit_code != 0 or result.printer is None:
        raise SystemExit(f"preview failed:\n{out.getvalue()[-3000:]}")
    return elapsed, result.printer.changes.get("create", 0)


def main(sizes: tuple[int, ...] = SIZES) -> None:
    missing = missing_plugins()
    if missing:
        print(f"engine_preview_cost: SKIPPED: {missing_message(missing)}")
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="k8sha-bench-") as tmp, TestDriverDaemon(Path(tmp) / "libvirtd") as daemon:
        work = Path(tmp)
        empty_s = inline_preview(work / "empty", "empty", 0)
        for size in sizes:
            config = on_hypervisor(prod_with_workers(size), daemon.uri)
            ours_s, created = ours(work / f"ours-{size}", config)
            program_only = time.perf_counter()
            graph = run_program(config, preview=True)
            mocks_s = time.perf_counter() - program_only
            custom = sum(1 for r in graph.resources.values() if not r.type.startswith(("k8s-ha:", "pulumi:pulumi:")))
            # What each registration carries to the engine (and the engine to the providers' Check/Diff)
            input_kib = sum(len(json.dumps(r.inputs, default=str)) for r in graph.resources.values()) / 1024
            edges = sum(len(r.dependencies) for r in graph.resources.values())
            trivial_s = inline_preview(work / f"trivial-{size}", f"t{size}", created - 1)  # minus the stack
            row = {"workers": size, "resources": created, "custom_resources": custom,
                   "ours_s": round(ours_s, 2), "trivial_sdk_s": round(trivial_s, 2),
                   "empty_program_s": round(empty_s, 2),
                   "program_under_mocks_s": round(mocks_s, 2), "ratio": round(ours_s / trivial_s, 2),
                   "input_kib": round(input_kib), "dependency_edges": edges,
                   "ratio_above_empty": round((ours_s - empty_s) / max(trivial_s - empty_s, 1e-9), 2)}
            rows.append(row)
            print(f"{size:>5} workers, {created:>5} resources: ours {ours_s:.1f} s, "
                  f"trivial SDK program {trivial_s:.1f} s "
                  f"(x{row['ratio']}; above the empty program's {empty_s:.1f} s: x{row['ratio_above_empty']}); "
                  f"our program alone under mocks {mocks_s:.1f} s; {input_kib:,.0f} KiB of inputs, "
                  f"{edges:,} dependency edges", flush=True)
            write(rows)
    print(f"wrote {OUT.relative_to(ROOT)}")


def write(rows: list[dict[str, Any]]) -> None:
    """After every size, so a long run that is stopped keeps what it measured."""
    OUT.write_text(json.dumps({"benchmark": "engine_preview_cost", "runs": 1, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or SIZES)  # e.g. `10 100` for a shorter run
