"""Real power cuts on real guests: the program's 2 LBs + 3 etcd members booted on two lab libvirt
hypervisors (tests/guests/), bootstrapped with the program's steps, then one run of each drill.

    sudo venv/bin/python bench/guests_failover.py      # root: libvirt daemons, namespaces

Order: loss of hv-a (its libvirtd and QEMUs SIGKILLed: the MASTER LB and one etcd member), then a
power cut (`virsh destroy`) of whichever LB holds the VIP, then of the etcd leader; each cut guest
is started again and must rejoin before the next drill. Prints a table and writes
bench/results/guests.json: image build, domain type, define->SSH per guest, QEMU memory per
guest, QEMU CPU per guest (booted and idle; serving its role), step times, drill seconds and
details, wall time.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.guests import drills  # noqa: E402
from tests.guests.domain_type import DomainTypeProbe, probe_domain_type  # noqa: E402
from tests.guests.hypervisors import LabHypervisors, cleanup_stale  # noqa: E402
from tests.guests.stack import BOOTED, GuestStack  # noqa: E402
from tests.guests.usage import cpu_percent, qemu_pids, rss_mib  # noqa: E402
from tests.support.images import lab_image  # noqa: E402

OUT = ROOT / "bench/results/guests.json"
GOALS = {"power-cut-vip-holder": 1.2, "power-cut-etcd-leader": 1.5}
NAMESPACE_HOSTS = {"power-cut-vip-holder": "1.69 s (host loss, bench/results/lab.json)",
                   "power-cut-etcd-leader": "etcd leader SIGKILL on namespace hosts (bench/results/lab.json)"}


def drill_all(stack: GuestStack) -> list[drills.Measurement]:
    """The drills in the order the module docstring gives."""
    return [drills.hypervisor_loss(stack, "hv-a"), drills.power_cut_vip_holder(stack),
            drills.power_cut_etcd_leader(stack)]


def report(stack: GuestStack, image: Path, image_s: float, probe: DomainTypeProbe, reachable: dict[str, float],
           steps: dict[str, float], usage: dict[str, dict[str, float]],
           measurements: list[drills.Measurement]) -> dict[str, Any]:
    return {
        "benchmark": "guests_failover",
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "load_average": os.getloadavg()},
        "image": {"file": image.name, "seconds_to_ready": round(image_s, 1),
                  "note": "seconds_to_ready is the build time when built in this run, else the cache check"},
        "domain_type": {"chosen": probe.domain_type, "reason": probe.reason},
        "guests": {n: {"vcpu": int(stack.driver.vms[n].domain.inputs["vcpu"]),
                       "memory_mib": int(stack.driver.vms[n].domain.inputs["memory"]),
                       "define_to_ssh_s": reachable[n], **usage.get(n, {})} for n in BOOTED},
        "steps_s": steps,
        "drills": [{"drill": m.drill, "seconds": m.seconds, "goal_s": GOALS.get(m.drill),
                    "namespace_hosts": NAMESPACE_HOSTS.get(m.drill), **m.details} for m in measurements],
    }


def write(result: dict[str, Any]) -> None:
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'drill':<28} {'seconds':>8} {'goal':>6}")
    for m in result["drills"]:
        print(f"{m['drill']:<28} {m['seconds']!s:>8} {m['goal_s']!s:>6}")
    print(f"wall {result.get('wall_s')} s; wrote {OUT.relative_to(ROOT)}")


def main() -> int:
    if os.geteuid() != 0:
        print("needs root (libvirt daemons, network namespaces)", file=sys.stderr)
        return 1
    cleanup_stale()
    wall = time.monotonic()
    image = lab_image()
    image_s = time.monotonic() - wall
    probe = probe_domain_type(image)
    print(f"domain type: {probe.domain_type} ({probe.reason})")
    with tempfile.TemporaryDirectory(prefix="k8s-ha-guests-") as tmp, LabHypervisors() as hvs:
        stack = GuestStack(hvs, image, probe.domain_type, Path(tmp))
        try:
            reachable = stack.boot()
            print(f"define -> SSH (s): {reachable}")
            pids = qemu_pids(hvs, BOOTED)
            booted_cpu = cpu_percent(pids)
            steps = stack.bootstrap()
            serving_cpu = cpu_percent(pids)
            usage = {n: {"qemu_rss_mib": rss_mib(pid), "cpu_pct_of_a_core_booted_idle": booted_cpu[n],
                         "cpu_pct_of_a_core_serving": serving_cpu[n]} for n, pid in pids.items()}
            print(f"QEMU CPU, % of a core over 30 s: booted {booted_cpu}; serving {serving_cpu}")
            result = report(stack, image, image_s, probe, reachable, steps, usage, drill_all(stack))
        finally:
            failed = stack.close()
    result["teardown_failures"] = failed
    result["leftovers"] = hvs.leftovers()
    result["wall_s"] = round(time.monotonic() - wall, 1)
    write(result)
    return 0 if not failed and not result["leftovers"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
