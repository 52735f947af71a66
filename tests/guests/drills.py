"""Real faults on real guests: a power cut of the VIP holder (`virsh destroy`) and of the etcd leader
(its QEMU SIGKILLed, so that the instant the guest stopped is known: `virsh destroy` returns only
after libvirt's polls and clean-up, and only writes started after the cut count), and the loss of a
whole hypervisor (its libvirtd and every QEMU it runs, SIGKILLed).

What is observed, and how:
* The client's view: tests/lab/probe.py in the lab namespace (the operator's workstation on the
  bridge): overlapping TCP connects to VIP:6443 every 50 ms, `etcdctl put` every 100 ms.
* Who holds the VIP, seen on BOTH load balancers (not only from outside): one SSH session per LB
  runs a loop printing whether eth0 carries the VIP every 100 ms; lines are stamped on arrival
  (guest clocks under TCG drift; one host clock orders them). A guest that stops reporting for
  longer than STALE_S is powered off and holds nothing.
* Fault instants are CLOCK_MONOTONIC readings taken just before the fault is injected.

Every wait is bounded and fails with the reason. The drills never judge durations: the tests
assert what must hold, the benchmark (bench/guests_failover.py) records the numbers.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.guests.stack import ETCD_NAMES, LB_NAMES, GuestStack
from tests.lab.drills import first_outage, first_write

PROBE = Path(__file__).resolve().parents[1] / "lab" / "probe.py"
WATCH_INTERVAL_S = 0.1
STALE_S = 5.0  # a guest silent this long is off (a starved TCG guest can lag a few seconds)
BOTH_WINDOW_S = 0.5  # two "I hold it" reports this close, with nothing in between, are a split brain
API_PORT = 6443
ETCD_PORT = 2379


class DrillError(AssertionError):
    """A drill could not do or observe what it needed within its time bound."""


@dataclass
class Measurement:
    drill: str
    seconds: float | None
    details: dict[str, Any] = field(default_factory=dict)


def wait_for(condition: Callable[[], bool], what: str, timeout: float, interval: float = 0.2) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise DrillError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start


class Lines:
    """A process whose stdout lines are collected, stamped with the host's monotonic clock."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        stdin=subprocess.DEVNULL, text=True)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._reader.join(5)


class VipWatch:
    """Both LBs report every 100 ms whether they hold the VIP (a context manager)."""

    def __init__(self, stack: GuestStack) -> None:
        self.stack = stack
        self.watchers: dict[str, Lines] = {}
        self.down: dict[str, list[list[float]]] = {}  # name -> [cut at, watched again at (or inf)]

    def _start(self, name: str) -> None:
        # No fork per sample: a loop of `ip | grep; sleep` costs three processes every 100 ms, which a
        # TCG guest pays 20-30x for and which then starves the keepalived it is watching. Bash builtins
        # only: the kernel's local-address table (/proc/net/fib_trie lists the VIP as a leaf only where
        # it is a local address) and a timed read on a FIFO no one writes as the sleep.
        loop = (f"f=$(mktemp -u); mkfifo -m 600 \"$f\"; exec 9<>\"$f\"; rm -f \"$f\"; "
                f"while :; do mapfile -t t </proc/net/fib_trie; case \" ${{t[*]}} \" in "
                f"*\"-- {self.stack.vip} \"*) echo 1;; *) echo 0;; esac; read -t {WATCH_INTERVAL_S} -u 9; done")
        self.watchers[name] = Lines([*self.stack.ssh_argv(name), "bash", "-c", shlex.quote(loop)])

    def __enter__(self) -> VipWatch:
        for name in LB_NAMES:
            self._start(name)
        return self

    def cut(self, names: tuple[str, ...] | list[str], at: float) -> None:
        """`names` lost power at `at`: from then until `restart` they hold nothing, whatever their
        last reports (made before the cut, some arriving after it) said."""
        for name in names:
            if name in self.watchers:
                self.down.setdefault(name, []).append([at, float("inf")])

    def restart(self, name: str) -> None:
        """After a guest came back: watch it again (its old session died with it)."""
        for span in self.down.get(name, []):
            span[1] = min(span[1], time.monotonic())
        self.watchers[name].stop()
        old = self.watchers[name].lines
        self._start(name)
        self.watchers[name].lines[:0] = old

    def __exit__(self, *exc: object) -> None:
        for watcher in self.watchers.values():
            watcher.stop()

    def holders_at(self, t: float, stale: float = STALE_S) -> tuple[str, ...]:
        held = []
        for name, watcher in self.watchers.items():
            if any(start <= t < end for start, end in self.down.get(name, [])):
                continue
            last = [(s, text) for s, text in list(watcher.lines) if s <= t]
            if last and t - last[-1][0] <= stale and last[-1][1] == "1":
                held.append(name)
        return tuple(held)

    def holders(self) -> tuple[str, ...]:
        return self.holders_at(time.monotonic())

    def both_samples(self, since: float) -> list[float]:
        """Instants (after `since`) at which both LBs reported holding the VIP within BOTH_WINDOW_S
        of each other. A guest `cut` holds nothing from its cut on: its last report, made before,
        must not pair with a survivor that takes over quickly (on TCG one took over within 0.35 s)."""
        stamps = sorted(s for w in self.watchers.values() for s, _ in list(w.lines) if s >= since)
        return [round(s - since, 3) for s in stamps if len(self.holders_at(s, BOTH_WINDOW_S)) == 2]


def _probe_argv(stack: GuestStack, *args: str) -> list[str]:
    return stack.netns_argv(["/usr/bin/python3", str(PROBE), *args])


def tcp_probe(stack: GuestStack, duration: float) -> Lines:
    return Lines(_probe_argv(stack, "tcp", "--target", f"{stack.vip}:{API_PORT}", "--interval", "0.05",
                             "--timeout", "0.5", "--duration", f"{duration:g}"))


def etcd_probe(stack: GuestStack, duration: float, endpoints: list[str] | None = None) -> Lines:
    return Lines(_probe_argv(stack, "etcdput", "--endpoints", ",".join(endpoints or stack.etcd_endpoints()),
                             "--cacert", str(stack.client_file("etcd-ca.crt")),
                             "--cert", str(stack.client_file("etcd-client.crt")),
                             "--key", str(stack.client_file("etcd-client.key")),
                             "--key-name", "/k8s-ha-guests/drill", "--interval", "0.1", "--timeout", "1",
                             "--duration", f"{duration:g}"))


def samples(lines: Lines) -> list[tuple[float, float, str]]:
    """probe.py's lines: 'START END TEXT' on the shared monotonic clock."""
    out = []
    for _arrived, line in list(lines.lines):
        start, end, rest = [*line.split(" ", 2), ""][:3]
        out.append((float(start), float(end), rest))
    return out


def etcdctl(stack: GuestStack, *args: str, endpoints: list[str] | None = None,
            timeout: float = 3.0) -> subprocess.CompletedProcess[str]:
    argv = stack.netns_argv([
        "etcdctl", f"--endpoints={','.join(endpoints or stack.etcd_endpoints())}",
        f"--cacert={stack.client_file('etcd-ca.crt')}", f"--cert={stack.client_file('etcd-client.crt')}",
        f"--key={stack.client_file('etcd-client.key')}", f"--dial-timeout={timeout:g}s",
        f"--command-timeout={timeout:g}s", *args])
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout * 4 + 10, check=False,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "ETCDCTL_API": "3"})


def etcd_leader(stack: GuestStack) -> str | None:
    by_url = {f"https://{stack.ip(n)}:{ETCD_PORT}": n for n in ETCD_NAMES}
    done = etcdctl(stack, "endpoint", "status", "-w", "json")
    try:
        status = json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        return None
    ids = {s["Status"]["header"]["member_id"]: by_url.get(s["Endpoint"]) for s in status}
    leaders = {s["Status"].get("leader", 0) for s in status}  # 0 (omitted): this member knows no leader
    return ids.get(leaders.pop()) if len(leaders) == 1 else None


def etcd_healthy(stack: GuestStack, names: tuple[str, ...] = ETCD_NAMES) -> bool:
    endpoints = [f"https://{stack.ip(n)}:{ETCD_PORT}" for n in names]
    return etcdctl(stack, "endpoint", "health", endpoints=endpoints).returncode == 0


def _vip_onto(stack: GuestStack, watch: VipWatch, wanted: list[str]) -> tuple[str, ...]:
    """Make one of `wanted` hold the VIP (a drill that loses the other LB's side proves nothing about
    failover): restart keepalived on the current holder, whose peer then takes the VIP and, with
    nopreempt, keeps it. The holders afterwards."""
    holders = watch.holders()
    if not wanted or set(holders) & set(wanted):
        return holders
    for holder in holders:
        stack.run(holder, "systemctl restart keepalived")
    wait_for(lambda: len(watch.holders()) == 1 and set(watch.holders()) <= set(wanted),
             f"the VIP to move to {wanted}", 60)
    return watch.holders()


def keepalived_state(stack: GuestStack, name: str) -> str:
    """MASTER / BACKUP / FAULT from keepalived's own journal (its last state transition)."""
    done = stack.run(name, "systemctl is-active keepalived haproxy; journalctl -u keepalived --no-pager -o cat "
                           "| grep -oE 'Entering (MASTER|BACKUP|FAULT) STATE' | tail -1", check=False)
    return done.stdout.strip().replace("\n", " ")


def _failed_and_back(probe_samples: list[tuple[float, float, str]], t0: float) -> bool:
    """The client saw the VIP fail after t0 and answer again."""
    outage = first_outage(probe_samples, t0)
    return outage["outage_started_s"] is not None and outage["recovered_s"] is not None


def _wait_back(stack: GuestStack, name: str, since: float) -> float:
    return stack.wait_for_ssh(name, since)


# ---------------------------------------------------------------- drills
def power_cut_vip_holder(stack: GuestStack) -> Measurement:
    """`virsh destroy` of the LB holding the VIP; seconds until VIP:6443 accepts TCP again. Then the
    cut guest is started again and must rejoin as BACKUP without taking the VIP (nopreempt)."""
    with VipWatch(stack) as watch, _probe_span(stack, 600) as probe:
        wait_for(lambda: len(watch.holders()) == 1, "exactly one LB holding the VIP", 300, 1)
        (victim,) = watch.holders()
        survivor = next(n for n in LB_NAMES if n != victim)
        time.sleep(1.0)
        t0 = time.monotonic()
        stack.power_off(victim)
        watch.cut([victim], t0)
        try:
            wait_for(lambda: _failed_and_back(samples(probe), t0), "the VIP to fail over and answer again", 60)
            wait_for(lambda: watch.holders() == (survivor,), f"{survivor} to report holding the VIP", 30)
        except DrillError:
            stack.power_on(victim)  # leave the pair whole for what runs next
            raise
        outage = first_outage(samples(probe), t0)
        stack.log(f"power cut of {victim}: VIP answers again after {outage['recovered_s']} s "
                  f"({outage['failed_probes']} failed probes); both held it at {watch.both_samples(t0 - 1.0)}")
        t1 = time.monotonic()
        stack.power_on(victim)
        back_s = _wait_back(stack, victim, t1)
        watch.restart(victim)
        wait_for(lambda: "BACKUP" in keepalived_state(stack, victim), f"{victim}'s keepalived in BACKUP", 300, 2)
        time.sleep(3.0)  # nopreempt: the VIP must stay where it is
        holders_after = watch.holders()
        both = watch.both_samples(t0 - 1.0)
    return Measurement("power-cut-vip-holder", outage["recovered_s"], {
        "victim": victim, "survivor": survivor, "failed_probes": outage["failed_probes"],
        "both_held_vip_at_s": both, "restarted_ssh_s": round(back_s, 1),
        "restarted_state": keepalived_state(stack, victim), "holders_after_rejoin": list(holders_after)})


def power_cut_etcd_leader(stack: GuestStack) -> Measurement:
    """A power cut of the etcd leader (its QEMU SIGKILLed: the instant is known, where `virsh destroy`
    returns seconds later under load); seconds to the first successful write. Then it is started
    again and must be a healthy member."""
    wait_for(lambda: etcd_leader(stack) is not None, "an agreed etcd leader", 300, 2)
    leader = etcd_leader(stack)
    if leader is None:
        raise DrillError("no agreed etcd leader before the drill")
    survivors = [f"https://{stack.ip(n)}:{ETCD_PORT}" for n in ETCD_NAMES if n != leader]
    writes = etcd_probe(stack, 600, survivors)
    try:
        time.sleep(1.0)
        t0 = stack.pull_plug(leader)
        cut_at_unix = time.time() - (time.monotonic() - t0)
        dead = t0 + 0.05  # writes started from here on cannot have been served by the old leader
        try:
            wait_for(lambda: first_write(samples(writes), dead) is not None, "a successful write", 60)
        except DrillError:
            stack.power_on(leader)  # leave the cluster whole for what runs next
            raise
        first = first_write(samples(writes), dead, t0)
        before = sorted(end - start for start, end, text in samples(writes) if end < t0 and text.startswith("0 "))
    finally:
        writes.stop()
    stack.log(f"power cut of etcd leader {leader}: first successful write after {first} s")
    t1 = time.monotonic()
    stack.power_on(leader)
    back_s = _wait_back(stack, leader, t1)
    healthy_s = wait_for(lambda: etcd_healthy(stack), "all three members healthy", 300, 1)
    return Measurement("power-cut-etcd-leader", first, {
        "leader": leader, "new_leader": etcd_leader(stack), "cut_at_unix": round(cut_at_unix, 3),
        "write_latency_before_cut_s": round(before[len(before) // 2], 3) if before else None,
        "restarted_ssh_s": round(back_s, 1), "healthy_after_ssh_s": round(healthy_s, 1)})


def hypervisor_loss(stack: GuestStack, hv: str) -> Measurement:
    """SIGKILL one hypervisor's libvirtd and every QEMU it runs. Seconds until the VIP accepts TCP
    again; details: first etcd write. Then the daemon is started again: its autostart guests boot
    and must rejoin (BACKUP, healthy member)."""
    lost = [n for n in (*LB_NAMES, *ETCD_NAMES) if stack.driver.vms[n].uri == stack.hvs[hv].uri]
    survivors = [f"https://{stack.ip(n)}:{ETCD_PORT}" for n in ETCD_NAMES if n not in lost]
    with VipWatch(stack) as watch, _probe_span(stack, 600) as probe:
        writes = etcd_probe(stack, 600, survivors)
        try:
            wait_for(lambda: len(watch.holders()) == 1, "exactly one LB holding the VIP", 60)
            holder_before = _vip_onto(stack, watch, [n for n in lost if n in LB_NAMES])
            time.sleep(1.0)
            t0 = stack.hvs.kill_daemon_and_guests(hv)
            watch.cut(lost, t0)
            dead = time.monotonic() + 0.05  # SIGKILLed processes are gone within this
            stack.driver.forget_connection(stack.hvs[hv].uri)
            holder_lost = any(n in lost for n in holder_before)
            if holder_lost:  # otherwise the VIP never moves: its outage stays 0
                wait_for(lambda: _failed_and_back(samples(probe), t0), "the VIP to fail over and answer", 60)
            wait_for(lambda: first_write(samples(writes), dead) is not None, "a successful etcd write", 60)
            outage = first_outage(samples(probe), t0)
            write_s = first_write(samples(writes), dead, t0)
        finally:
            writes.stop()
        stack.log(f"loss of {hv} ({lost}): VIP back after {outage['recovered_s']} s, first etcd write after "
                  f"{write_s} s")
        t1 = time.monotonic()
        stack.hvs.restart_daemon(hv)  # autostart brings its guests back
        back = {n: round(_wait_back(stack, n, t1), 1) for n in lost}
        for name in lost:
            if name in LB_NAMES:
                watch.restart(name)
                wait_for(lambda n=name: "BACKUP" in keepalived_state(stack, n), f"{name} in BACKUP", 300, 2)
        healthy_s = wait_for(lambda: etcd_healthy(stack), "all etcd members healthy", 300, 1)
        both = watch.both_samples(t0 - 1.0)
        holders_after = watch.holders()
    return Measurement(f"hypervisor-loss-{hv}", outage["recovered_s"], {
        "lost": lost, "vip_holder_before": list(holder_before), "vip_holder_lost": holder_lost,
        "failed_probes": outage["failed_probes"],
        "first_etcd_write_s": write_s, "both_held_vip_at_s": both, "restarted_ssh_s": back,
        "healthy_after_restart_s": round(healthy_s, 1), "holders_after_rejoin": list(holders_after)})


@contextlib.contextmanager
def _probe_span(stack: GuestStack, duration: float) -> Iterator[Lines]:
    lines = tcp_probe(stack, duration)
    try:
        yield lines
    finally:
        lines.stop()
