"""Program cost of a preview: our program vs the bare SDK registering the same resources.

Both run under the same recording mock monitor (no engine, no providers), so the difference is
what our code adds per resource: validation, placement, rendering every bundle, hashing. The
baseline registers exactly the same number of resources of each type with trivial inputs.
Prints seconds and the ratio per worker count; writes bench/results/preview_cost.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pulumi  # noqa: E402

from bench.stacks import SIZES, prod_with_workers  # noqa: E402
from tests.unit.harness import Graph, Mocks, RecordingMonitor, run_program  # noqa: E402

RUNS = 3



class Bare(pulumi.CustomResource):
    def __init__(self, typ: str, name: str) -> None:
        super().__init__(typ, name, {"value": name})


def bare_program(counts: Counter[str]) -> float:
    graph = Graph()
    mocks = Mocks()
    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="k8s-ha", stack="bench", preview=True,
                             monitor=RecordingMonitor(mocks, graph))
    start = time.perf_counter()

    @pulumi.runtime.test  # type: ignore[misc]
    def program() -> None:
        for typ, count in counts.items():
            for i in range(count):
                Bare(typ, f"{typ.rsplit(':', 1)[-1]}-{i}")

    program()
    return time.perf_counter() - start


def ours(config: dict[str, Any]) -> tuple[float, Counter[str]]:
    start = time.perf_counter()
    graph = run_program(config, preview=True)
    elapsed = time.perf_counter() - start
    counts = Counter(r.type for r in graph.resources.values() if not r.type.startswith("k8s-ha:")
                     and r.type != "pulumi:pulumi:Stack")
    return elapsed, counts


def main() -> None:
    rows = []
    for size in SIZES:
        config = prod_with_workers(size)
        samples, counts = [], Counter[str]()
        for _ in range(RUNS):
            elapsed, counts = ours(config)
            samples.append(elapsed)
        bare = [bare_program(counts) for _ in range(RUNS)]
        row = {"workers": size, "resources": sum(counts.values()),
               "ours_s": round(statistics.median(samples), 3), "bare_sdk_s": round(statistics.median(bare), 3)}
        row["ratio"] = round(row["ours_s"] / row["bare_sdk_s"], 2)
        rows.append(row)
        print(f"{size:>5} workers, {row['resources']:>5} resources: ours {row['ours_s']:.3f} s, "
              f"bare SDK {row['bare_sdk_s']:.3f} s, ratio x{row['ratio']}")
    base = rows[0]
    for row in rows:
        row["ours_growth_vs_10"] = round(row["ours_s"] / base["ours_s"], 2)
    out = ROOT / "bench/results/preview_cost.json"
    out.write_text(json.dumps({"benchmark": "preview_cost", "runs": RUNS, "results": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
