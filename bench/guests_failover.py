"""Real power cuts on real guests: the program's 2 LBs + 3 etcd members booted on two lab libvirt
hypervisors (tests/guests/), bootstrapped with the program's steps, then one run of each drill.

    sudo venv/bin/python bench/guests_failover.py      # root: libvirt daemons, namespaces

Order: loss of hv-a (its libvirtd and QEMUs SIGKILLed: the MASTER LB and one etcd member), then a
power cut (`virsh destroy`) of whichever LB holds the VIP, then of the etcd leader; each cut guest
is started again and must rejoin before the next drill. Prints a table and writes
bench/results/guests.json: image build, domain type, define->SSH per guest, QEMU memory per
guest, step times, drill seconds and details, wall time.
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

from k8s_ha.cli.image import ImageRecipe, build, packages_for  # noqa: E402
from tests.guests import drills  # noqa: E402
from tests.guests.domain_type import DomainTypeProbe, probe_domain_type  # noqa: E402
from tests.guests.hypervisors import LabHypervisors, cleanup_stale  # noqa: E402
from tests.guests.stack import BOOTED, GuestStack  # noqa: E402

OUT = ROOT / "bench/results/guests.json"
GOALS = {"power-cut-vip-holder": 1.2, "power-cut-etcd-leader": 1.5}
NAMESPACE_HOSTS = {"power-cut-vip-holder": "1.69 s (host loss, bench/results/lab.json)",
                   "power-cut-etcd-leader": "etcd leader SIGKILL on namespace hosts (bench/results/lab.json)"}


def qemu_memory(hvs: LabHypervisors, stack: GuestStack) -> dict[str, int]:
    """Resident MiB of each guest's QEMU process (guest RAM it touched + QEMU + TCG cache)."""
    out: dict[str, int] = {}
    for pid in hvs._pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if not cmdline or b"qemu-system" not in cmdline[0]:
            continue
        name = next((n for n in BOOTED if f"guest=k8s-ha-guests-{n},".encode() in b" ".join(cmdline)), None)
        rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        if name:
            out[name] = rss // 1024
    return out


def drill_all(stack: GuestStack) -> list[drills.Measurement]:
    """The drills in the order the module docstring gives."""
    return [drills.hypervisor_loss(stack, "hv-a"), drills.power_cut_vip_holder(stack),
            drills.power_cut_etcd_leader(stack)]


def report(stack: GuestStack, image: Path, image_s: float, probe: DomainTypeProbe, reachable: dict[str, float],
           steps: dict[str, float], memory: dict[str, int], measurements: list[drills.Measurement]) -> dict[str, Any]:
    return {
        "benchmark": "guests_failover",
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "load_average": os.getloadavg()},
        "image": {"file": image.name, "seconds_to_ready": round(image_s, 1),
                  "note": "seconds_to_ready is the build time when built in this run, else the cache check"},
        "domain_type": {"chosen": probe.domain_type, "reason": probe.reason},
        "guests": {n: {"vcpu": int(stack.driver.vms[n].domain.inputs["vcpu"]),
                       "memory_mib": int(stack.driver.vms[n].domain.inputs["memory"]),
                       "define_to_ssh_s": reachable[n], "qemu_rss_mib": memory.get(n)} for n in BOOTED},
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
    image = build(ImageRecipe(packages=packages_for(["loadbalancer", "etcd"], [])), ROOT / ".cache" / "images")
    image_s = time.monotonic() - wall
    probe = probe_domain_type(image)
    print(f"domain type: {probe.domain_type} ({probe.reason})")
    with tempfile.TemporaryDirectory(prefix="k8s-ha-guests-") as tmp, LabHypervisors() as hvs:
        stack = GuestStack(hvs, image, probe.domain_type, Path(tmp))
        try:
            reachable = stack.boot()
            print(f"define -> SSH (s): {reachable}")
            steps = stack.bootstrap()
            result = report(stack, image, image_s, probe, reachable, steps, qemu_memory(hvs, stack),
                            drill_all(stack))
        finally:
            failed = stack.close()
    result["teardown_failures"] = failed
    result["leftovers"] = hvs.leftovers()
    result["wall_s"] = round(time.monotonic() - wall, 1)
    write(result)
    return 0 if not failed and not result["leftovers"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
