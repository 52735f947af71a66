"""Program cost of a preview: our program vs the bare SDK registering the same resources.

All run under the same recording mock monitor (no engine, no providers). Two baselines register
exactly the same resources with the bare SDK: with trivial inputs ("bare"), and with the very
inputs our program produced ("same inputs": the cost of moving those bundles and certificates
through the SDK and the monitor). ours / same-inputs is what our code itself adds: validation,
placement, rendering every bundle, hashing, the Output plumbing.
Prints seconds and the ratio per worker count; writes bench/results/preview_cost.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pulumi  # noqa: E402

from bench.stacks import SIZES, prod_with_workers  # noqa: E402
from tests.unit.harness import Graph, Mocks, RecordingMonitor, Registered, run_program  # noqa: E402

RUNS = 3



class Bare(pulumi.CustomResource):
    def __init__(self, typ: str, name: str, inputs: dict[str, Any]) -> None:
        super().__init__(typ, name, inputs)


def bare_program(resources: list[tuple[str, str, dict[str, Any]]]) -> float:
    graph = Graph()
    mocks = Mocks()
    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="k8s-ha", stack="bench", preview=True,
                             monitor=RecordingMonitor(mocks, graph))
    start = time.perf_counter()

    @pulumi.runtime.test  # type: ignore[misc]
    def program() -> None:
        for typ, name, inputs in resources:
            Bare(typ, name, inputs)

    program()
    return time.perf_counter() - start


def ours(config: dict[str, Any]) -> tuple[float, list[Registered]]:
    start = time.perf_counter()
    graph = run_program(config, preview=True)
    elapsed = time.perf_counter() - start
    custom = [r for r in graph.resources.values() if not r.type.startswith(("k8s-ha:", "pulumi:pulumi:"))]
    return elapsed, custom


def main() -> None:
    rows = []
    for size in SIZES:
        config = prod_with_workers(size)
        samples, registered = [], []
        for _ in range(RUNS):
            elapsed, registered = ours(config)
            samples.append(elapsed)
        trivial = [(r.type, r.name, {"value": r.name}) for r in registered]
        same = [(r.type, r.name, r.inputs) for r in registered]
        bare = [bare_program(trivial) for _ in range(RUNS)]
        same_inputs = [bare_program(same) for _ in range(RUNS)]
        row = {"workers": size, "resources": len(registered),
               "ours_s": round(statistics.median(samples), 3), "bare_sdk_s": round(statistics.median(bare), 3),
               "same_inputs_sdk_s": round(statistics.median(same_inputs), 3)}
        row["ratio_to_bare"] = round(row["ours_s"] / row["bare_sdk_s"], 2)
        row["ratio_to_same_inputs"] = round(row["ours_s"] / row["same_inputs_sdk_s"], 2)
        rows.append(row)
        print(f"{size:>5} workers, {row['resources']:>5} resources: ours {row['ours_s']:.3f} s, "
              f"bare SDK {row['bare_sdk_s']:.3f} s (x{row['ratio_to_bare']}), same inputs through the SDK "
              f"{row['same_inputs_sdk_s']:.3f} s (x{row['ratio_to_same_inputs']})")
    base = rows[0]
    for row in rows:
        row["ours_growth_vs_10"] = round(row["ours_s"] / base["ours_s"], 2)
    out = ROOT / "bench/results/preview_cost.json"
    out.write_text(json.dumps({"benchmark": "preview_cost", "runs": RUNS, "results": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
