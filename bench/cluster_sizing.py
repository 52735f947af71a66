"""What one kubeadm master costs under TCG, measured before sizing the cluster tier.

Boots the lab stack's load balancers, etcd members and first master (six guests), runs their
recorded steps through `kubeadm init` from the served lab bundle, lets the cluster settle, then
samples every guest's QEMU CPU (percent of one host core) and the master's own view (load average,
CPU split, top processes). Baseline in the same run: the same guests before any Kubernetes step.

    venv/bin/python bench/cluster_sizing.py [--settle-s 180] [--sample-s 120]

Writes bench/results/cluster_sizing.json. Needs root, the guests tier's tools and scripts/lab-artifacts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cluster.bundle_server import LabBundleServer  # noqa: E402
from tests.cluster.cluster import ClusterStack  # noqa: E402
from tests.cluster.config import CLUSTER, ETCD_NAMES, LB_NAMES, NODES  # noqa: E402
from tests.cluster.conftest import LAB_ARTIFACTS, missing_artifacts  # noqa: E402
from tests.guests.domain_type import probe_domain_type  # noqa: E402
from tests.guests.hypervisors import LabHypervisors, cleanup_stale  # noqa: E402
from tests.guests.usage import cpu_percent, qemu_pids, rss_mib  # noqa: E402
from tests.support.images import lab_image  # noqa: E402
from tests.support.lab_artifacts import lab_binary, lab_pins  # noqa: E402
from tests.support.provenance import provenance  # noqa: E402

MASTER = "cp1"
BOOTED = (*LB_NAMES, *ETCD_NAMES, MASTER)
OUT = ROOT / "bench" / "results" / "cluster_sizing.json"


def guest_view(stack: ClusterStack, name: str) -> dict[str, object]:
    """The guest's own load average, CPU split over 10 s and its busiest processes."""
    script = ("cat /proc/loadavg; head -1 /proc/stat; sleep 10; head -1 /proc/stat; "
              "top -bn1 -o %CPU | sed -n '8,15p'")
    lines = stack.run(name, script, timeout=120).stdout.splitlines()
    a, b = ([int(x) for x in line.split()[1:8]] for line in lines[1:3])
    delta = [y - x for x, y in zip(a, b, strict=True)]
    total = sum(delta) or 1
    split = dict(zip(("user", "nice", "system", "idle", "iowait", "irq", "softirq"),
                     (round(100 * d / total, 1) for d in delta), strict=True))
    top = [" ".join(line.split()[8:9] + line.split()[11:12]) for line in lines[3:] if line.strip()]
    return {"loadavg_1m": float(lines[0].split()[0]), "cpu_split_percent": split, "top_cpu": top}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settle-s", type=float, default=180.0, help="wait after kubeadm init before sampling")
    parser.add_argument("--sample-s", type=float, default=120.0)
    args = parser.parse_args()
    if (reason := missing_artifacts()) is not None:
        print(f"cluster sizing: {reason}", file=sys.stderr)
        return 2
    cleanup_stale()
    image = lab_image()
    probe = probe_domain_type(image)
    work = ROOT / ".cache" / "guests" / "cluster-sizing"
    kubectl = lab_binary(LAB_ARTIFACTS, "kubectl")
    result: dict[str, object] = {**provenance(),
                                 "domain_type": probe.domain_type,
                                 "booted": list(BOOTED), "host_cores": len(os.sched_getaffinity(0))}
    with LabHypervisors() as hvs, LabBundleServer(hvs, LAB_ARTIFACTS / "bundle", work / "registry"):
        stack = ClusterStack(hvs, image, probe.domain_type, work / "stack", lab_pins(LAB_ARTIFACTS), kubectl,
                             booted=BOOTED)
        try:
            t0 = time.monotonic()
            result["define_to_ssh_s"] = stack.boot()
            pids = qemu_pids(hvs, BOOTED, cluster=CLUSTER)
            result["baseline_booted_cpu_percent"] = cpu_percent(pids, 30)
            stack.bootstrap(through=f"{MASTER}-k8s-init")
            result["steps_s"] = {k: round(b - a, 1) for k, (a, b) in stack.step_spans.items()}
            result["to_kubeadm_init_done_s"] = round(time.monotonic() - t0, 1)
            print(f"kubeadm init done after {result['to_kubeadm_init_done_s']} s; settling {args.settle_s:g} s",
                  flush=True)
            time.sleep(args.settle_s)
            cpu = cpu_percent(pids, args.sample_s)
            result["idle_cpu_percent_of_a_core"] = cpu
            result["idle_cpu_total_percent"] = round(sum(cpu.values()), 1)
            result["rss_mib"] = {n: rss_mib(p) for n, p in pids.items()}
            result["master_view"] = guest_view(stack, MASTER)
            restarts = stack.run(MASTER, "crictl ps -a -o json", timeout=60).stdout
            result["master_container_restarts"] = {
                c["metadata"]["name"]: c["metadata"].get("attempt", 0) for c in json.loads(restarts)["containers"]}
            # The projection the tier is sized by: each booted kind's measured cost, times its count.
            per_kind = {"lb": max(cpu[n] for n in LB_NAMES), "etcd": max(cpu[n] for n in ETCD_NAMES),
                        "master": cpu[MASTER]}
            counts = {"lb": 2, "etcd": 3, "master": sum(n.startswith("cp") for n in NODES)}
            result["projected_lab_stack_percent_without_workers"] = round(
                sum(per_kind[k] * counts[k] for k in per_kind), 1)
        finally:
            OUT.write_text(json.dumps(result, indent=2) + "\n")
            failed = stack.close()
    print(json.dumps(result, indent=2))
    print(f"wrote {OUT.relative_to(ROOT)}; cleanup failures: {failed}; leftovers: {hvs.leftovers()}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
