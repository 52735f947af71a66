"""Real power cuts on real guests: the program's 2 LBs + 3 etcd members booted on two lab libvirt
hypervisors (tests/guests/), bootstrapped with the program's steps (every timer at its default),
then each drill `--runs` times (default 5) and the no-false-failover soak (`--soak` seconds under
load, default 600; 0 skips it; bench/failover_soak.py says what it counts).

    sudo venv/bin/python bench/guests_failover.py [--runs 5] [--soak 600]   # root: libvirt, namespaces

Order, per run: loss of hv-a (its libvirtd and QEMUs SIGKILLed: the LB holding the VIP, moved
there first, and one etcd member), then a power cut (`virsh destroy`) of whichever LB holds the
VIP, then of the etcd leader; each cut guest is started again and must rejoin before the next
drill. Prints a table and writes bench/results/guests.json: image build, domain type, define->SSH
per guest, QEMU memory and CPU per guest (booted and idle; serving its role), step times, every
drill's runs with median and worst against its goal, wall time; the soak goes to
bench/results/failover_soak.json. The timer options of bench/failover_soak.py run a baseline with
other timers: its drills and its soak get sections of their own (guests_baselines.json,
failover_soak.json), and guests.json (as with `--runs 0`) is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import failover_soak  # noqa: E402
from bench.election_timeline import election_timeline  # noqa: E402
from k8s_ha.model.spec import parse_stack  # noqa: E402
from tests.guests import drills  # noqa: E402
from tests.guests.domain_type import DomainTypeProbe, probe_domain_type  # noqa: E402
from tests.guests.hypervisors import LabHypervisors, cleanup_stale  # noqa: E402
from tests.guests.stack import BOOTED, GuestStack  # noqa: E402
from tests.guests.usage import cpu_percent, qemu_pids, rss_mib  # noqa: E402
from tests.support.images import lab_image  # noqa: E402
from tests.support.provenance import provenance  # noqa: E402

OUT = ROOT / "bench/results/guests.json"
BASELINES = ROOT / "bench/results/guests_baselines.json"
GOALS = {"hypervisor-loss-hv-a": 1.2, "power-cut-vip-holder": 1.2, "power-cut-etcd-leader": 1.5}
NAMESPACE_HOSTS = {"power-cut-vip-holder": "1.69 s (host loss, bench/results/lab.json)",
                   "power-cut-etcd-leader": "etcd leader SIGKILL on namespace hosts (bench/results/lab.json)"}


def drill_all(stack: GuestStack, runs: int) -> list[list[drills.Measurement]]:
    """Each run: the drills in the order the module docstring gives; the runs of each drill. The
    etcd leader drill also gets each survivor's Raft steps after the cut (bench/election_timeline.py)."""
    rounds = []
    for number in range(1, runs + 1):
        hv_loss, vip_cut = drills.hypervisor_loss(stack, "hv-a"), drills.power_cut_vip_holder(stack)
        etcd_cut = drills.power_cut_etcd_leader(stack)
        survivors = [n for n in drills.ETCD_NAMES if n != etcd_cut.details["leader"]]
        try:
            etcd_cut.details["election_s"] = election_timeline(stack, survivors, etcd_cut.details["cut_at_unix"])
        except Exception as error:  # a diagnostic: the drill's own figure stands without it
            etcd_cut.details["election_s"] = {"error": repr(error)}
        print(f"  after the cut (s): {etcd_cut.details['election_s']}", flush=True)
        rounds.append([hv_loss, vip_cut, etcd_cut])
        print(f"run {number}/{runs}: {[(m.drill, m.seconds) for m in rounds[-1]]}", flush=True)
    return [list(ms) for ms in zip(*rounds, strict=True)]


def summary(runs: list[drills.Measurement]) -> dict[str, Any]:
    """Median and worst of one drill's runs, against its goal; every run's details kept."""
    values = [m.seconds for m in runs if m.seconds is not None]
    goal = GOALS.get(runs[0].drill)
    median = round(statistics.median(values), 3) if values else None
    return {"drill": runs[0].drill, "median_s": median, "worst_s": max(values, default=None),
            "seconds": values, "goal_s": goal,
            "median_meets_goal": None if goal is None or median is None else median <= goal,
            "namespace_hosts": NAMESPACE_HOSTS.get(runs[0].drill),
            "never_two_holders": all(not m.details.get("both_held_vip_at_s") for m in runs),
            "runs": [m.details for m in runs]}


def report(stack: GuestStack, image: Path, image_s: float, probe: DomainTypeProbe, reachable: dict[str, float],
           steps: dict[str, float], usage: dict[str, dict[str, float]],
           measurements: list[list[drills.Measurement]]) -> dict[str, Any]:
    return {
        "benchmark": "guests_failover",
        **provenance(),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "load_average": os.getloadavg()},
        "image": {"file": image.name, "seconds_to_ready": round(image_s, 1),
                  "note": "seconds_to_ready is the build time when built in this run, else the cache check"},
        "domain_type": {"chosen": probe.domain_type, "reason": probe.reason},
        "guests": {n: {"vcpu": int(stack.driver.vms[n].domain.inputs["vcpu"]),
                       "memory_mib": int(stack.driver.vms[n].domain.inputs["memory"]),
                       "define_to_ssh_s": reachable[n], **usage.get(n, {})} for n in BOOTED},
        "steps_s": steps,
        "timers": failover_soak.timers(parse_stack(stack.config)),
        "runs_per_drill": len(measurements[0]) if measurements else 0,
        "drills": [summary(runs) for runs in measurements],
    }


def write(result: dict[str, Any], baseline: str | None, *, table: bool = True) -> None:
    """The shipped timers' drills go to guests.json; a baseline's to its own section of
    guests_baselines.json, so it never replaces them; a run without drills writes neither. `table`:
    print them (once, at the end, with the wall time)."""
    if result["drills"] and baseline is None:
        OUT.write_text(json.dumps(result, indent=2) + "\n")
    elif result["drills"]:
        data = json.loads(BASELINES.read_text()) if BASELINES.is_file() else {"benchmark": "guests_failover"}
        data[baseline] = result
        BASELINES.write_text(json.dumps(data, indent=2) + "\n")
    if not table:
        return
    print(f"\n{'drill':<28} {'median':>7} {'worst':>7} {'goal':>6}  runs")
    for m in result["drills"]:
        print(f"{m['drill']:<28} {m['median_s']!s:>7} {m['worst_s']!s:>7} {m['goal_s']!s:>6}  {m['seconds']}")
    written = (OUT if baseline is None else BASELINES).relative_to(ROOT) if result["drills"] else "no drills"
    print(f"wall {result.get('wall_s')} s; {written}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs of each drill (default 5)")
    parser.add_argument("--soak", type=float, default=600.0, help="seconds of the soak under load (0: none)")
    failover_soak.timer_options(parser)
    args = parser.parse_args()
    overrides = failover_soak.timer_overrides(args)
    if os.geteuid() != 0:
        print("needs root (libvirt daemons, network namespaces)", file=sys.stderr)
        return 1
    section = failover_soak.section_name("guests", overrides)
    baseline = section if overrides else None
    cleanup_stale()
    wall = time.monotonic()
    image = lab_image()
    image_s = time.monotonic() - wall
    probe = probe_domain_type(image)
    print(f"domain type: {probe.domain_type} ({probe.reason})")
    with tempfile.TemporaryDirectory(prefix="k8s-ha-guests-") as tmp, LabHypervisors() as hvs:
        stack = GuestStack(hvs, image, probe.domain_type, Path(tmp))
        failover_soak.apply_overrides(stack.config, overrides)
        stack.rerun_program()
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
            result = report(stack, image, image_s, probe, reachable, steps, usage, drill_all(stack, args.runs))
            write(result, baseline, table=False)  # the drills' figures are kept even if the soak fails
            if args.soak > 0:
                soaked = failover_soak.soak(stack, args.soak, Path(tmp) / "host-scratch")
                failover_soak.record(section, {"node_kind": f"libvirt guest ({probe.domain_type})",
                                               "timers": result["timers"], **soaked})
        finally:
            failed = stack.close()
    result["teardown_failures"] = failed
    result["leftovers"] = hvs.leftovers()
    result["wall_s"] = round(time.monotonic() - wall, 1)
    write(result, baseline)
    return 0 if not failed and not result["leftovers"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
