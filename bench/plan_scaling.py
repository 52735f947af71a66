"""How `plan` (parse + validate + place + fault analysis + report) grows with the worker count.

Prints milliseconds per size (median of several runs) and the ratio to the smallest size measured
in the same run; writes bench/results/plan.json. Linear growth means ratio ~ size ratio.
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

from bench.stacks import SIZES, prod_with_workers  # noqa: E402
from k8s_ha.placement.plan import plan_stack  # noqa: E402
from k8s_ha.placement.report import plan_data  # noqa: E402

RUNS = 7



def plan_once(config: dict[str, Any]) -> float:
    start = time.perf_counter()
    plan = plan_stack(config)
    plan_data(plan.spec, plan.placement)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    results = []
    for size in SIZES:
        config = prod_with_workers(size)
        plan_once(config)  # warm-up
        samples = [plan_once(config) for _ in range(RUNS)]
        results.append({"workers": size, "ms_median": round(statistics.median(samples), 2),
                        "ms_min": round(min(samples), 2), "ms_max": round(max(samples), 2)})
    base = results[0]
    for row in results:
        row["ratio_to_10"] = round(row["ms_median"] / base["ms_median"], 2)
        row["size_ratio"] = row["workers"] // base["workers"]
        print(f"plan with {row['workers']:>5} workers: {row['ms_median']:8.2f} ms median "
              f"(min {row['ms_min']}, max {row['ms_max']}); x{row['ratio_to_10']} time for x{row['size_ratio']} size")
    out = ROOT / "bench/results/plan.json"
    out.write_text(json.dumps({"benchmark": "plan_scaling", "runs": RUNS, "results": results}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
