"""Failover drills on a fresh lab stack, each run 3 times: min / median / max seconds per drill,
against the goals in docs/architecture.md and the published numbers of the usual alternatives.

    sudo venv/bin/python bench/lab_failover.py          # root: the lab creates namespaces

The lab (docs/lab.md) is bootstrapped with the production steps and the production defaults
(k8s_ha/model/timers.py: advertIntervalMs 300, VRRPv3, HAProxy checks every 1000 ms, fall 3, rise 2;
etcd heartbeat 100 ms, election 800 ms). In the same run, host loss is also measured with
advertIntervalMs 1000 (keepalived's usual `advert_int 1`) as the baseline, rolled out as a config
change would be; etcd is measured again with the faster hosts' 500 ms election timeout, with etcd's
own 1000 ms, and without pre-vote (etcd 3.4's own default), as the baselines for those settings.
Prints a table and writes bench/results/lab.json. Drills and what they measure: tests/lab/drills.py
and docs/ha.md.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from k8s_ha.model.timers import (  # noqa: E402
    ADVERT_INTERVAL_MS,
    ELECTION_TIMEOUT_MS,
    ETCD_OWN_ELECTION_TIMEOUT_MS,
    FAST_HOSTS_ELECTION_TIMEOUT_MS,
)
from tests.lab import drills  # noqa: E402
from tests.lab.labhosts import SshKey, cleanup_stale  # noqa: E402
from tests.lab.stack import LAB_DEFAULTS, LB_NAMES, LabStack, lab_stack  # noqa: E402
from tests.support.provenance import provenance  # noqa: E402

RUNS = 3
OUT = ROOT / "bench/results/lab.json"

VIP_TARGET = "VIP back <= 2 s"
KEEPALIVED_DEFAULT = "keepalived advert_int 1: ~3.6 s on host loss; kube-vip ~3 s"
# drill -> (what the seconds are, target text, target seconds or None, published comparison, an earlier lab run)
INFO: dict[str, tuple[str, str, float | None, str, str]] = {
    "haproxy-kill": ("HAProxy SIGKILLed (kept down) on the MASTER -> VIP:6443 answers from the BACKUP",
                     VIP_TARGET, 2.0, KEEPALIVED_DEFAULT, "2.0 s (check every 1 s, fall 2)"),
    "haproxy-kill-restarted": ("HAProxy SIGKILLed on the MASTER, Debian's Restart=always -> VIP:6443 answers",
                               VIP_TARGET, 2.0, KEEPALIVED_DEFAULT, "-"),
    "keepalived-stop": ("keepalived stopped on the MASTER -> VIP:6443 answers from the BACKUP",
                        VIP_TARGET, 2.0, KEEPALIVED_DEFAULT, "0.67 s"),
    "keepalived-kill": ("keepalived SIGKILLed on the MASTER, restarted by k8s-ha's drop-in -> seconds BOTH "
                        "held the VIP", "split brain <= 1 advert interval", ADVERT_INTERVAL_MS / 1000, "-",
                        "VIP stays on the dead node too"),
    "keepalived-kill-no-restart": ("baseline: Debian's unit as shipped (no Restart=) -> seconds BOTH held the VIP "
                                   "(until started by hand)", "-", None, "-", "VIP stays on the dead node too"),
    f"host-loss-advert-{ADVERT_INTERVAL_MS}ms": (
        f"MASTER's link cut -> VIP:6443 answers from the BACKUP (advertIntervalMs {ADVERT_INTERVAL_MS})",
                               VIP_TARGET, 2.0, KEEPALIVED_DEFAULT, "3.76 s (advert_int 1)"),
    "host-loss-advert-1000ms": ("the same with advertIntervalMs 1000 (baseline)", "-", None,
                                KEEPALIVED_DEFAULT, "3.76 s"),
    "apiserver-drop": ("apiserver stand-in SIGKILLed -> HAProxy on the MASTER marks it DOWN",
                       "dropped <= 6 s", 6.0, "Kubespray's HAProxy checks ~30 s", "~2 s"),
    "lb-restart": ("rolling restart of haproxy+keepalived, BACKUP then MASTER -> longest time BOTH held the VIP",
                   "<= 1 advert interval", ADVERT_INTERVAL_MS / 1000, "-", "-"),
    "etcd-leader-kill": ("etcd leader SIGKILLed -> first successful write", "<= 1.5 s", 1.5,
                         "Kubespray/KubeKey etcd timers: 5 s", "1.5 s median"),
    "etcd-quorum-loss": ("2 of 3 members killed (writes fail), started again -> all healthy and a write",
                         "-", None, "-", "healthy in 0.1 s after restart"),
}


def keys_in(directory: Path) -> Callable[[str], SshKey]:
    cache: dict[str, SshKey] = {}

    def key(name: str) -> SshKey:
        if name not in cache:
            cache[name] = SshKey.generate(directory / name, comment=f"bench-{name}")
        return cache[name]

    return key


def row(name: str, measurements: list[drills.Measurement], *, label: str | None = None) -> dict[str, Any]:
    what, target, target_s, published, design = INFO[name]
    values = [m.seconds for m in measurements if m.seconds is not None]
    stats = drills.summary(values) if values else {}
    return {"drill": label or name, "measures": what, "seconds": values, **stats, "target": target,
            "meets_target": None if target_s is None or not values else stats["max"] <= target_s,
            "published": published, "design_lab": design, "runs": [m.details for m in measurements]}


def config(stack: LabStack) -> dict[str, Any]:
    lb, etcd = stack.spec.load_balancer, stack.spec.etcd
    check = lb.haproxy
    return {
        "advert_interval_ms": lb.advert_interval_ms, "vrrp_version": lb.vrrp_version,
        "haproxy_check": {"inter_ms": check.check_interval_ms, "fastinter_ms": max(100, check.check_interval_ms // 2),
                          "fall": check.fall, "rise": check.rise,
                          "timeout_check_ms": max(100, min(check.check_interval_ms, 2000))},
        "keepalived_check": {"interval_s": 1, "fall": 1, "rise": 2},
        "etcd": {"heartbeat_ms": etcd.heartbeat_interval_ms, "election_ms": etcd.election_timeout_ms,
                 "unit_restart_sec": 1},
        "probes": {"tcp_connect_every_s": drills.PROBE_S, "vip_sampling_every_s": drills.SAMPLE_S,
                   "etcd_put_every_s": 0.1},
    }


def versions() -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        return (done.stdout or done.stderr).splitlines()[0].strip()

    return {"haproxy": first_line(["haproxy", "-v"]), "keepalived": first_line(["keepalived", "--version"]),
            "etcd": first_line(["etcd", "--version"]), "kernel": platform.release(), "cpus": str(os.cpu_count())}


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'drill':<34} {'min':>6} {'median':>7} {'max':>6}  {'target':<34} published")
    for r in rows:
        if "median" not in r:
            print(f"{r['drill']:<34} {'-':>6} {'-':>7} {'-':>6}  {r['target']:<34} {r['published']}")
            continue
        print(f"{r['drill']:<34} {r['min']:>6.2f} {r['median']:>7.2f} {r['max']:>6.2f}  {r['target']:<34} "
              f"{r['published']}")


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("the lab needs root (network, mount and PID namespaces)")
    cleanup_stale()
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    baselines: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lab-bench-keys-") as tmp, lab_stack(keys_in(Path(tmp))) as stack:
        stack.bootstrap()
        drills.frontdoor_steady(stack)
        drills.etcd_steady(stack)
        used = config(stack)
        print(f"lab bootstrapped in {time.monotonic() - started:.1f} s; {RUNS} runs per drill", flush=True)
        for drill in (*drills.FRONT_DOOR_DRILLS.values(), *drills.ETCD_DRILLS.values()):
            measured = drill(stack, RUNS)
            key = measured[0].drill  # host-loss carries its advert interval in the name
            rows.append(row(key, measured))
            print(f"  {key}: {[m.seconds for m in measured]}", flush=True)
        # Baseline: keepalived's usual 1 s adverts, rolled out as a config change (keepalived reloads).
        stack.retune(load_balancer={"advertIntervalMs": 1000})
        stack.run_steps(LB_NAMES, "loadbalancer")
        baseline = drills.host_loss(stack, RUNS)
        rows.append(row("host-loss-advert-1000ms", baseline))
        print(f"  host-loss-advert-1000ms: {[m.seconds for m in baseline]}", flush=True)
        stack.retune(load_balancer={"advertIntervalMs": ADVERT_INTERVAL_MS})
        stack.run_steps(LB_NAMES, "loadbalancer")
        # Baselines: the faster hosts' election timeout and etcd's own (1000 ms), each rolled out by the
        # member steps one at a time.
        for election_ms in (FAST_HOSTS_ELECTION_TIMEOUT_MS, ETCD_OWN_ELECTION_TIMEOUT_MS):
            stack.retune(etcd={"electionTimeoutMs": election_ms})
            stack.run_steps_serially(drills.ETCD_NAMES, "etcd-member")
            measured = drills.ETCD_DRILLS["etcd-leader-kill"](stack, RUNS)
            label = f"etcd-leader-kill (baseline: electionTimeoutMs {election_ms})"
            baselines.append(row("etcd-leader-kill", measured, label=label))
            print(f"  etcd-leader-kill with a {election_ms} ms election timeout: {[m.seconds for m in measured]}",
                  flush=True)
        stack.retune(etcd={"electionTimeoutMs": ELECTION_TIMEOUT_MS})
        # Baseline: etcd 3.4's own default (no pre-vote), rolled out by the member steps one at a time.
        stack.retune(etcd={"preVote": False})
        stack.run_steps_serially(drills.ETCD_NAMES, "etcd-member")
        for name in ("etcd-leader-kill", "etcd-quorum-loss"):
            measured = drills.ETCD_DRILLS[name](stack, RUNS)
            baselines.append(row(name, measured, label=f"{name} (baseline: etcd.preVote false)"))
            print(f"  {name} without pre-vote: {[m.seconds for m in measured]}", flush=True)
        stack.retune(etcd={"preVote": True})
        stack.run_steps_serially(drills.ETCD_NAMES, "etcd-member")
    by_name = {r["drill"]: r for r in rows}
    default = f"host-loss-advert-{ADVERT_INTERVAL_MS}ms"
    ratio = by_name[default]["median"] / by_name["host-loss-advert-1000ms"]["median"]
    result = {
        "benchmark": "lab_failover", **provenance(), "runs_per_drill": RUNS,
        "wall_s": round(time.monotonic() - started, 1),
        "config": used, "versions": versions(),
        "lab_adaptations": {path: text.strip() for path, text in LAB_DEFAULTS.items()},
        "results": rows,
        f"host_loss_median_ratio_{ADVERT_INTERVAL_MS}ms_to_1000ms": round(ratio, 2),
        "baselines": baselines,
    }
    print_table(rows)
    print("\nbaselines, same run (not the production config):")
    print_table(baselines)
    print(f"\nhost loss, advertIntervalMs {ADVERT_INTERVAL_MS} vs 1000: x{ratio:.2f} of the time (medians)")
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} in {result['wall_s']} s")


if __name__ == "__main__":
    main()
