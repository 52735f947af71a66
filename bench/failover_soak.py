"""No false failover: the front door and etcd with the shipped timers, run under CPU and disk load
while a client connects through the VIP and writes to etcd throughout.

    sudo venv/bin/python bench/failover_soak.py [--seconds 600]      # on node containers
    sudo venv/bin/python bench/guests_failover.py --soak 600         # the same soak on TCG guests

The stack is the program's own (2 load balancers, 3 etcd members; every timer at its default),
bootstrapped by its recorded steps. For the soak's length, each load balancer and etcd member runs
one CPU spinner and one disk writer (8 MiB written and fsynced every half second: a busy disk, not a
saturated one, where no timer could help), and so does this machine (in the bench's own directory);
every load process ends by itself (`timeout`). `--advert-ms`, `--election-ms`, `--track-interval-s`
and `--track-timeout-s` run a baseline with other timers; its section is named after them.

Counted over the soak (goal: 0 of each): VIP moves and keepalived state changes (keepalived's own
journal on each load balancer), instants when both load balancers held the VIP (each reports every
100 ms), etcd elections (the Raft term; each member's `etcd_server_leader_changes_seen_total` also
shows a follower that lost its leader for a moment without an election), failed TCP
connects to VIP:6443 (one every 50 ms) and failed etcd writes (one every 100 ms). Writes its node
kind's section of bench/results/failover_soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from k8s_ha.model.spec import StackSpec, parse_stack  # noqa: E402
from tests.guests.drills import (  # noqa: E402
    ETCD_NAMES,
    LB_NAMES,
    VipWatch,
    etcd_leader,
    etcd_probe,
    etcdctl,
    samples,
    tcp_probe,
    wait_for,
)
from tests.support.provenance import provenance  # noqa: E402
from tests.support.recorded_stack import RecordedStack  # noqa: E402

OUT = ROOT / "bench" / "results" / "failover_soak.json"
WRITER_MIB, WRITER_PAUSE_S = 8, 0.5
STATES = re.compile(r"Entering (MASTER|BACKUP|FAULT) STATE")
# etcd's leader-change counter from the member's own metrics listener (plain HTTP on loopback).
LEADER_CHANGES = ("exec 3<>/dev/tcp/127.0.0.1/2381; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; "
                  "grep -m1 '^etcd_server_leader_changes_seen_total' <&3 | cut -d' ' -f2")


def _load_script(seconds: float, scratch: str) -> str:
    """One CPU spinner and one fsyncing disk writer, each ending by itself after `seconds`."""
    spin = f"timeout {seconds:.0f} bash -c 'while :; do :; done'"
    write = (f"timeout {seconds:.0f} bash -c 'while :; do dd if=/dev/zero of={scratch} bs=1M count={WRITER_MIB} "
             f"conv=fsync status=none; sleep {WRITER_PAUSE_S}; done'")
    return f"{spin} & {write} & wait; rm -f {scratch}"


def _node_load(stack: RecordedStack, name: str, seconds: float) -> None:
    script = _load_script(seconds, "/var/tmp/k8s-ha-soak")
    stack.run(name, f"setsid -f bash -c {shlex.quote(script)} </dev/null >/dev/null 2>&1")


def _host_load(seconds: float, scratch: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["bash", "-c", _load_script(seconds, str(scratch))], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _keepalived_states(stack: RecordedStack, name: str) -> list[str]:
    done = stack.run(name, "journalctl -u keepalived --no-pager -o cat", timeout=120)
    return [m.group(1) for m in STATES.finditer(done.stdout)]


def _leader_changes(stack: RecordedStack, name: str) -> int:
    return int(stack.run(name, LEADER_CHANGES).stdout.strip() or 0)


def _raft_term(stack: RecordedStack) -> int:
    """The cluster's Raft term (the highest any member reports): one more per election held."""
    done = etcdctl(stack, "endpoint", "status", "-w", "json")
    return max((int(s["Status"]["raftTerm"]) for s in json.loads(done.stdout or "[]")), default=-1)


def _counters(stack: RecordedStack) -> dict[str, Any]:
    return {"keepalived": {n: _keepalived_states(stack, n) for n in LB_NAMES},
            "leader_changes": {n: _leader_changes(stack, n) for n in ETCD_NAMES}, "term": _raft_term(stack)}


def timers(spec: StackSpec) -> dict[str, Any]:
    """The timers the soak ran with (the stack's, which are the defaults unless it says otherwise)."""
    lb, etcd = spec.load_balancer, spec.etcd
    return {"vrrp_version": lb.vrrp_version, "advert_interval_ms": lb.advert_interval_ms,
            "track_script": lb.haproxy_check.model_dump(),
            "haproxy": {"check_interval_ms": lb.haproxy.check_interval_ms, "fall": lb.haproxy.fall,
                        "rise": lb.haproxy.rise},
            "etcd": {"heartbeat_interval_ms": etcd.heartbeat_interval_ms,
                     "election_timeout_ms": etcd.election_timeout_ms, "pre_vote": etcd.pre_vote}}


def soak(stack: RecordedStack, seconds: float, scratch: Path) -> dict[str, Any]:
    """Run the load and the clients for `seconds`; the counts, each with what it is made of."""
    with VipWatch(stack) as watch:
        wait_for(lambda: len(watch.holders()) == 1, "exactly one load balancer holding the VIP", 300, 1)
        wait_for(lambda: etcd_leader(stack) is not None, "an agreed etcd leader", 300, 2)
        before = _counters(stack)
        holder, leader = watch.holders(), etcd_leader(stack)
        connects = tcp_probe(stack, seconds)
        writes = etcd_probe(stack, seconds)
        t0 = time.monotonic()
        for name in (*LB_NAMES, *ETCD_NAMES):
            _node_load(stack, name, seconds)
        host = _host_load(seconds, scratch)
        load = [round(x, 2) for x in os.getloadavg()]
        time.sleep(seconds)
        load_end = [round(x, 2) for x in os.getloadavg()]
        host.wait(60)
        wait_for(lambda: connects.process.poll() is not None and writes.process.poll() is not None,
                 "the clients to finish", 60, 1)
        connects.stop()
        writes.stop()
        after = _counters(stack)
        both = watch.both_samples(t0)
        holder_after, leader_after = watch.holders(), etcd_leader(stack)
    tcp = samples(connects)
    puts = samples(writes)
    states = {n: after["keepalived"][n][len(before["keepalived"][n]):] for n in LB_NAMES}
    changes = {n: after["leader_changes"][n] - before["leader_changes"][n] for n in ETCD_NAMES}
    failed_tcp = [round(s - t0, 2) for s, _e, text in tcp if not text.startswith("1")]
    failed_puts = [round(s - t0, 2) for s, _e, text in puts if not text.startswith("0")]
    return {
        "seconds": seconds,
        "vip_moves": sum(s.count("MASTER") for s in states.values()),
        "keepalived_state_changes": sum(len(s) for s in states.values()),
        "both_held_vip_at_s": both,
        "etcd_leader_changes": after["term"] - before["term"],
        "failed_vip_connects": len(failed_tcp),
        "failed_etcd_writes": len(failed_puts),
        "details": {
            "vip_connects": len(tcp), "etcd_writes": len(puts), "failed_vip_connects_at_s": failed_tcp[:50],
            "failed_etcd_writes_at_s": failed_puts[:50], "keepalived_states_during": states,
            "raft_term_before_after": [before["term"], after["term"]],
            # A follower that missed heartbeats for an election timeout drops its leader (pre-vote then
            # fails while the others still follow it) and counts a change when it hears it again.
            "leader_lost_by_a_follower": changes, "vip_holder": [list(holder), list(holder_after)],
            "etcd_leader": [leader, leader_after], "host_load_average_start_end": [load, load_end],
            "load": f"on each of {', '.join((*LB_NAMES, *ETCD_NAMES))} and this machine: one CPU spinner and "
                    f"one disk writer ({WRITER_MIB} MiB fsynced every {WRITER_PAUSE_S} s)",
        },
    }


def record(kind: str, result: dict[str, Any]) -> None:
    """This node kind's section of bench/results/failover_soak.json (the other kind's stays)."""
    data = json.loads(OUT.read_text()) if OUT.is_file() else {"benchmark": "failover_soak"}
    data[kind] = {**provenance(), "kernel": platform.release(),
                  "cpus": os.cpu_count(), **result}
    OUT.write_text(json.dumps(data, indent=2) + "\n")
    counts = ("vip_moves", "keepalived_state_changes", "etcd_leader_changes", "failed_vip_connects",
              "failed_etcd_writes")
    print(f"\n{kind}, {result['seconds']:.0f} s under load: " + ", ".join(f"{c} {result[c]}" for c in counts)
          + f", both held the VIP at {result['both_held_vip_at_s']}")
    print(f"wrote {OUT.relative_to(ROOT)}")


def on_nodes(seconds: float, overrides: dict[str, Any]) -> dict[str, Any]:
    """The load balancers and etcd members as node containers, installed from the served lab bundle."""
    from k8s_ha.cli.image import rootfs_path
    from tests.cluster.bundle_server import LabBundleServer
    from tests.nodes.containers import NodeLab, cleanup_stale, unpacked_rootfs
    from tests.nodes.stack import NodeStack
    from tests.support.images import lab_image
    from tests.support.lab_artifacts import lab_artifacts_dir, lab_pins, missing_artifacts

    if (reason := missing_artifacts()) is not None:
        raise SystemExit(f"node containers need the lab artifacts: {reason}")
    cleanup_stale()
    artifacts = lab_artifacts_dir()
    rootfs = unpacked_rootfs(rootfs_path(lab_image()))
    with tempfile.TemporaryDirectory(prefix="k8s-ha-soak-") as tmp:
        work = Path(tmp)
        lab = NodeLab(work / "lab")
        with lab, LabBundleServer(lab, artifacts / "bundle", work / "registry"):
            stack = NodeStack(lab, rootfs, work / "stack", lab_pins(artifacts))
            apply_overrides(stack.config, overrides)
            stack.rerun_program()
            try:
                front = (*LB_NAMES, *ETCD_NAMES)
                stack.boot(front)
                for wave in stack.step_order(front):
                    for command in wave:
                        stack.run_command(command)
                result = {"node_kind": "LXC system container (Debian 13, systemd)",
                          "timers": timers(parse_stack(stack.config)), **soak(stack, seconds, work / "host-scratch")}
            finally:
                failed = stack.close()
        result["teardown_failures"] = failed
        result["leftovers"] = lab.leftovers()
    return result


def timer_options(parser: argparse.ArgumentParser) -> None:
    """The options that run a baseline with other timers than the shipped ones."""
    parser.add_argument("--advert-ms", type=int, help="a baseline: loadBalancer.advertIntervalMs")
    parser.add_argument("--election-ms", type=int, help="a baseline: etcd.electionTimeoutMs")
    parser.add_argument("--track-interval-s", type=int, help="a baseline: loadBalancer.haproxyCheck.intervalS")
    parser.add_argument("--track-timeout-s", type=int, help="a baseline: loadBalancer.haproxyCheck.timeoutS")


def timer_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The stack-file keys the timer options set (an empty dict: the shipped timers)."""
    lb: dict[str, Any] = {}
    check = {key: value for key, value in (("intervalS", args.track_interval_s), ("timeoutS", args.track_timeout_s))
             if value is not None}
    if args.advert_ms is not None:
        lb["advertIntervalMs"] = args.advert_ms
    if check:
        lb["haproxyCheck"] = check
    etcd = {"electionTimeoutMs": args.election_ms} if args.election_ms is not None else {}
    return {key: value for key, value in (("loadBalancer", lb), ("etcd", etcd)) if value}


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Merge `overrides` into a stack config, section by section (nested mappings merged too)."""
    for key, value in overrides.items():
        if isinstance(value, dict):
            apply_overrides(config.setdefault(key, {}), value)
        else:
            config[key] = value


def section_name(kind: str, overrides: dict[str, Any]) -> str:
    """`kind`, or for a baseline `kind (baseline: key=value, ...)`, so it never replaces the shipped run."""
    def flat(prefix: str, values: dict[str, Any]) -> list[str]:
        return [item for key, value in values.items()
                for item in (flat(f"{prefix}{key}.", value) if isinstance(value, dict) else [f"{prefix}{key}={value}"])]
    changed = flat("", overrides)
    return kind + (f" (baseline: {', '.join(changed)})" if changed else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600.0, help="how long the load runs (default 600)")
    timer_options(parser)
    args = parser.parse_args()
    overrides = timer_overrides(args)
    if os.geteuid() != 0:
        print("needs root (system containers, network namespaces)", file=sys.stderr)
        return 1
    started = time.monotonic()
    result = on_nodes(args.seconds, overrides)
    result["wall_s"] = round(time.monotonic() - started, 1)
    record(section_name("node_containers", overrides), result)
    return 0 if not result["teardown_failures"] and not result["leftovers"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
