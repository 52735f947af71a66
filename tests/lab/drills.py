"""Fault drills on a bootstrapped lab stack (tests/lab/stack.py): inject one fault, measure what
the client sees, restore the lab, repeat.

Each drill is `drill(stack, runs) -> list[Measurement]`: bounded (every wait has a timeout and
fails with the reason), and it restores the lab after every run, also when the run failed. The
headline number of a measurement is `seconds`; `details` carries what explains it.

How things are observed, and why that way:
* Fault instants are CLOCK_MONOTONIC readings taken just before the fault is injected, so every
  time is an upper bound that includes the injection itself (tens of ms; `inject_s` records it).
  Faults are injected with `exec_local` (nsenter, no SSH) where speed matters.
* The client's view comes from probe.py in the client namespace: overlapping TCP connects to
  VIP:6443 every 50 ms, TLS GETs through the VIP, HAProxy's stats page, `etcdctl put`.
* Where the VIP is: every 20 ms the test reads each LB's /proc/PID/net/fib_trie (the kernel's
  table of local addresses of that network namespace; a file read, no connection) - cheap
  enough to catch both LBs holding the VIP at once.
* etcd leader changes: `etcdctl endpoint status` of the surviving members every 100 ms (etcd's
  own raft log lines have whole seconds only); writes: `etcdctl put` every 100 ms, overlapping.

The drills never judge durations; the tests assert what must hold (the VIP moved, writes came
back, no split brain longer than one advert interval, the dead backend was dropped) and the
benchmark (bench/lab_failover.py) reports the numbers.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import re
import shlex
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.lab.labhosts import PROXY_VARS, LabHost
from tests.lab.stack import APISERVER_PORT, CP_NAMES, ETCD_NAMES, LB_NAMES, STANDIN_UNIT, LabStack

DROP_IN = "zz-k8s-ha-lab-drill.conf"  # sorts after the production drop-in (k8s-ha.conf): overrides it
KILL_SETTLE_S = 0.05  # after `systemctl kill` returns, the killed process is gone within this
SETTLE_TIMEOUT_S = 30.0
SAMPLE_S = 0.02  # VIP presence sampling
PROBE_S = 0.05  # TCP connects, stats polls
BEFORE_FAULT_S = 0.3  # probes run this long before the fault, to show the healthy state


class DrillError(AssertionError):
    """A drill could not do or observe what it needed within its time bound."""


@dataclass
class Measurement:
    drill: str
    seconds: float | None  # the headline number; None when the drill has none
    details: dict[str, Any] = field(default_factory=dict)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = SETTLE_TIMEOUT_S,
             interval: float = 0.05, explain: Callable[[], str] | None = None) -> float:
    """Poll until `condition()` is true; returns the seconds it took. Raises DrillError on timeout,
    with what `explain()` says about the state (e.g. the last probe samples)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise DrillError(f"timed out after {timeout:g} s waiting for {what}"
                             + (f"\n{explain()}" if explain else ""))
        time.sleep(interval)
    return time.monotonic() - start


def summary(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3),
            "max": round(max(values), 3)}


# ------------------------------------------------------------------ observing
def _client_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in PROXY_VARS}


class Probe:
    """probe.py running in the client namespace; its lines are collected on a thread.
    A context manager: the process is always stopped (by its PID) on exit."""

    def __init__(self, stack: LabStack, mode: str, *args: str, duration: float) -> None:
        argv = stack.lab.client_argv(stack.probe_command(mode, *args, "--duration", f"{duration:g}"))
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=_client_env())
        self.lines: list[tuple[float, float, str]] = []
        self.errors: list[str] = []
        self._readers = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=self._read_errors, daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            start, end, rest = [*line.rstrip("\n").split(" ", 2), ""][:3]
            self.lines.append((float(start), float(end), rest))

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.errors = [*self.errors[-19:], line.rstrip("\n")]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for reader in self._readers:
            reader.join(5)

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def samples(self) -> list[tuple[float, float, str]]:
        return list(self.lines)

    def tail(self, since: float, n: int = 4) -> list[str]:
        """The first and last samples after `since`, for error messages."""
        after = [f"{s - since:+.2f}s..{e - since:+.2f}s {text[:160]}" for s, e, text in self.lines if s >= since]
        shown = [*after[:n], "...", *after[-n:]] if len(after) > 2 * n else after
        if self.process.poll() is not None:
            shown.append(f"probe exited {self.process.returncode}: {self.errors[-3:]}")
        return shown


def first_outage(samples: list[tuple[float, float, str]], t0: float) -> dict[str, Any]:
    """For ok/fail samples ("1" / "0 why"): the first failure started after t0 and the end of the
    first success started after it. `recovered_s` = that end - t0 (0.0 when nothing failed)."""
    after = sorted((s for s in samples if s[0] >= t0), key=lambda s: s[0])
    failed = [s for s in after if not s[2].startswith("1")]
    if not failed:
        return {"recovered_s": 0.0, "failed_probes": 0, "outage_started_s": None}
    first = failed[0]
    recovered = min((s[1] for s in after if s[2].startswith("1") and s[0] >= first[0]), default=None)
    return {"recovered_s": None if recovered is None else round(recovered - t0, 3),
            "failed_probes": len([s for s in failed if recovered is None or s[0] < recovered]),
            "outage_started_s": round(first[0] - t0, 3),
            "errors": sorted({s[2][2:] for s in failed})}


def vip_on(host: LabHost, vip: str) -> bool:
    """True when `vip` is a local address in the host's network namespace (kernel's fib_trie)."""
    try:
        trie = open(f"/proc/{host.init_pid}/net/fib_trie").read()  # noqa: SIM115
    except OSError:
        return False
    return re.search(rf"\|-- {re.escape(vip)}\n\s+/32 host LOCAL", trie) is not None


def vip_holders(stack: LabStack) -> tuple[str, ...]:
    return tuple(name for name in LB_NAMES if vip_on(stack.host(name), stack.vip))


class VipSampler:
    """Samples which LBs hold the VIP every 20 ms on a thread (a context manager)."""

    def __init__(self, stack: LabStack, interval: float = SAMPLE_S) -> None:
        self.stack, self.interval = stack, interval
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), vip_holders(self.stack)))
            self._stop.wait(self.interval)

    def __enter__(self) -> VipSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def both_spans(self, since: float = 0.0) -> list[tuple[float, float, bool]]:
        """(start, end, ended) of every stretch in which both LBs held the VIP; a stretch runs from
        its first sample to the first sample after it without both (an upper bound: +1 interval)."""
        spans: list[tuple[float, float, bool]] = []
        start: float | None = None
        for t, holders in self.samples:
            if t < since:
                continue
            if len(holders) == 2 and start is None:
                start = t
            elif len(holders) != 2 and start is not None:
                spans.append((start, t, True))
                start = None
        if start is not None:
            spans.append((start, self.samples[-1][0], False))
        return spans

    def longest_both(self, since: float = 0.0) -> float:
        return max((end - start for start, end, _ in self.both_spans(since)), default=0.0)

    def first(self, holders: tuple[str, ...], since: float) -> float | None:
        return next((t for t, h in self.samples if t >= since and h == holders), None)

    def moves(self, since: float) -> int:
        """How many times the set of holders changed after `since`."""
        seen = [h for t, h in self.samples if t >= since]
        return sum(1 for a, b in itertools.pairwise(seen) if a != b)


def backend_status(stack: LabStack, lb: str) -> dict[str, str]:
    """The apiserver backends as this LB's HAProxy sees them (its stats page, from the client)."""
    done = stack.lab.client_run(stack.probe_command(
        "stats", "--url", f"http://{stack.host(lb).ip}:{stack.spec.load_balancer.haproxy.stats_port}/stats;csv",
        "--password-file", stack.client_file("stats-password"), "--timeout", "2"), check=False)
    lines = done.stdout.splitlines()
    return json.loads(lines[-1].split(" ", 2)[2]) if lines else {}


def vip_answers(stack: LabStack) -> bool:
    done = stack.lab.client_run(stack.probe_command("tcp", "--target", f"{stack.vip}:{APISERVER_PORT}",
                                                    "--timeout", "1"), check=False)
    return done.stdout.split()[2:3] == ["1"]


def https_through_vip(stack: LabStack) -> dict[str, Any]:
    """One TLS handshake (verified against the cluster CA) and GET /readyz through the VIP."""
    done = stack.lab.client_run(stack.probe_command(
        "https", "--target", f"{stack.vip}:{APISERVER_PORT}", "--ca", stack.client_file("kubernetes-ca.crt"),
        "--timeout", "3"))
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1].split(" ", 2)[2])
    return result


# ------------------------------------------------------------ the front door
def _units(host: LabHost, command: str, *units: str) -> None:
    host.run(f"systemctl {command} {' '.join(units)}")


def set_drop_in(stack: LabStack, lb: str, unit: str, text: str | None) -> None:
    """Add (or with None remove) a lab drill drop-in and restart the unit so that it applies:
    the shim, like systemd after daemon-reload, reads Restart= when it starts a unit."""
    path = f"/etc/systemd/system/{unit}.service.d/{DROP_IN}"
    if text is None:
        script = f"if [ -e {path} ]; then rm -f {path}; systemctl restart {unit}; fi"
    else:
        script = (f"mkdir -p {os.path.dirname(path)} && printf %s {shlex.quote(text)} > {path} "
                  f"&& systemctl restart {unit}")
    stack.host(lb).run(script)


def _all_backends_up(stack: LabStack, lb: str) -> bool:
    return set(backend_status(stack, lb).values()) == {"UP"}


def _ssh_works(host: LabHost) -> bool:
    return host.run("true", check=False).returncode == 0


def frontdoor_steady(stack: LabStack, timeout: float = SETTLE_TIMEOUT_S) -> None:
    """The front door's normal state: VIP on the MASTER only, every backend UP on both LBs,
    and VIP:6443 accepting connections from the client."""
    master = stack.master
    wait_for(lambda: vip_holders(stack) == (master,), f"the VIP on {master} only", timeout)
    for lb in LB_NAMES:
        wait_for(functools.partial(_all_backends_up, stack, lb), f"every apiserver backend UP on {lb}", timeout, 0.2)
    wait_for(lambda: vip_answers(stack), "VIP:6443 to accept connections", timeout)


def restore_frontdoor(stack: LabStack) -> None:
    """Undo whatever a front-door drill did: links up, daemons and stand-ins started, steady state."""
    for lb in LB_NAMES:
        stack.host(lb).link_up()
    for lb in LB_NAMES:
        wait_for(functools.partial(_ssh_works, stack.host(lb)), f"SSH to {lb}", 15, interval=0.2)
        _units(stack.host(lb), "start", "haproxy", "keepalived")
    for cp in CP_NAMES:
        _units(stack.host(cp), "start", STANDIN_UNIT)
    frontdoor_steady(stack)


@contextlib.contextmanager
def front_door_run(stack: LabStack) -> Iterator[None]:
    """One drill run: starts from the steady state; the lab is restored afterwards, also on failure."""
    frontdoor_steady(stack)
    try:
        yield
    finally:
        restore_frontdoor(stack)


def _repeat(runs: int, one: Callable[[], Measurement]) -> list[Measurement]:
    return [one() for _ in range(runs)]


def _vip_probe(stack: LabStack, duration: float) -> Probe:
    return Probe(stack, "tcp", "--target", f"{stack.vip}:{APISERVER_PORT}", "--interval", f"{PROBE_S:g}",
                 "--timeout", "0.5", duration=duration)


def _vip_run(stack: LabStack, name: str, fault: Callable[[], object], *, settle: float = 10.0,
             extra: Callable[[VipSampler], dict[str, Any]] | None = None) -> Measurement:
    """Inject `fault` on the MASTER; measure until VIP:6443 answers again from the BACKUP."""
    with front_door_run(stack), VipSampler(stack) as sampler, _vip_probe(stack, settle + 5) as probe:
        time.sleep(BEFORE_FAULT_S)
        t0 = time.monotonic()
        fault()
        inject = time.monotonic() - t0

        def answering_from_backup() -> bool:
            moved = sampler.first((stack.backup,), t0)
            return moved is not None and any(start >= moved and text.startswith("1")
                                             for start, _end, text in probe.samples())

        wait_for(answering_from_backup, f"{name}: VIP:6443 answering from {stack.backup}", settle)
        time.sleep(0.2)
        outage = first_outage(probe.samples(), t0)
        moved = sampler.first((stack.backup,), t0)
        details = {**outage, "inject_s": round(inject, 3),
                   "vip_on_backup_s": None if moved is None else round(moved - t0, 3),
                   "holders_after": list(vip_holders(stack)),
                   "longest_both_s": round(sampler.longest_both(t0), 3)}
        if extra:
            details |= extra(sampler)
    return Measurement(name, outage["recovered_s"], details)


def haproxy_kill(stack: LabStack, runs: int = 1) -> list[Measurement]:
    """HAProxy SIGKILLed on the MASTER and kept down (a lab drop-in sets Restart=no: a crash that
    systemd does not or cannot undo): keepalived's check fails, the MASTER goes to FAULT and sends a
    priority-0 advert, the BACKUP takes the VIP. Seconds: until VIP:6443 answers from the BACKUP."""
    master = stack.host(stack.master)
    set_drop_in(stack, stack.master, "haproxy", "[Service]\nRestart=no\n")
    try:
        return _repeat(runs, lambda: _vip_run(stack, "haproxy-kill",
                                              lambda: master.exec_local(["pkill", "-KILL", "-x", "haproxy"])))
    finally:
        set_drop_in(stack, stack.master, "haproxy", None)
        restore_frontdoor(stack)


def _haproxy_kill_restarted_run(stack: LabStack) -> Measurement:
    master = stack.host(stack.master)
    with front_door_run(stack), VipSampler(stack) as sampler, _vip_probe(stack, 8) as probe:
        time.sleep(BEFORE_FAULT_S)
        old = set(master.pids("haproxy"))
        t0 = time.monotonic()
        master.exec_local(["pkill", "-KILL", "-x", "haproxy"])
        wait_for(lambda: bool(master.pids("haproxy")) and not set(master.pids("haproxy")) & old,
                 "haproxy restarted by its unit", 10)
        time.sleep(3)  # keepalived's check (every 1 s, rise 2) settles either way
        outage = first_outage(probe.samples(), t0)
        restarts = master.run("systemctl show -p NRestarts --value haproxy").stdout.strip()
        return Measurement("haproxy-kill-restarted", outage["recovered_s"], {
            **outage, "vip_moves": sampler.moves(t0), "nrestarts": int(restarts),
            "longest_both_s": round(sampler.longest_both(t0), 3)})


def haproxy_kill_restarted(stack: LabStack, runs: int = 1) -> list[Measurement]:
    """HAProxy SIGKILLed on the MASTER under Debian's unit (Restart=always, 100 ms): it comes back
    by itself. Seconds: until VIP:6443 accepted connections again; details: whether the VIP moved."""
    return _repeat(runs, lambda: _haproxy_kill_restarted_run(stack))


def keepalived_stop(stack: LabStack, runs: int = 1) -> list[Measurement]:
    """`systemctl stop keepalived` on the MASTER: it sends a priority-0 advert and drops the VIP."""
    master = stack.host(stack.master)
    return _repeat(runs, lambda: _vip_run(stack, "keepalived-stop", lambda: _units(master, "stop", "keepalived")))


def _vrrp_state(host: LabHost) -> str:
    log = host.run("grep -o 'Entering [A-Z]* STATE' /var/log/shim/keepalived.service.log | tail -n 1",
                   check=False).stdout.strip()
    return log.split()[1] if log else "unknown"


def _split_brain_run(stack: LabStack, name: str, observe: float) -> Measurement:
    master = stack.host(stack.master)
    with front_door_run(stack), VipSampler(stack) as sampler, _vip_probe(stack, observe + 20) as probe:
        time.sleep(BEFORE_FAULT_S)
        t0 = time.monotonic()
        master.exec_local(["systemctl", "kill", "-s", "SIGKILL", "keepalived"])
        time.sleep(observe)
        restarted_by_unit = master.run("systemctl is-active --quiet keepalived", check=False).returncode == 0
        t_start = time.monotonic()
        if not restarted_by_unit:
            _units(master, "start", "keepalived")
        wait_for(lambda: vip_holders(stack) == (stack.master,), "the VIP back on the MASTER only", 20)
        time.sleep(0.2)
        spans = sampler.both_spans(t0)
        both = sampler.first((stack.master, stack.backup), t0)
        ended = max((end for _start, end, _ended in spans), default=None)
        return Measurement(name, round(sum(end - start for start, end, _ in spans), 3), {
            "keepalived_restarted_by_unit": restarted_by_unit,
            "both_from_s": None if both is None else round(both - t0, 3),
            "longest_both_s": round(sampler.longest_both(t0), 3),
            "observed_s": observe,
            "both_when_observation_ended": any(start <= t_start <= end for start, end, _ in spans),
            "split_brain_ended_after_start_s": None if restarted_by_unit or ended is None
            else round(ended - t_start, 3),
            "backup_vrrp_state": _vrrp_state(stack.host(stack.backup)),
            **{f"client_{k}": v for k, v in first_outage(probe.samples(), t0).items()},
        })


def keepalived_kill(stack: LabStack, runs: int = 1, observe: float = 4.0) -> list[Measurement]:
    """keepalived SIGKILLed on the MASTER (every process of the unit, as a crash or the OOM killer
    would), as deployed: the load-balancer step's drop-in (Restart=always, RestartSec 100 ms) brings
    it back, it removes the VIPs it finds at startup and resumes as MASTER once elected.
    Seconds: how long both LBs held the VIP."""
    return _repeat(runs, lambda: _split_brain_run(stack, "keepalived-kill", observe))


def keepalived_kill_no_restart(stack: LabStack, runs: int = 1, observe: float = 4.0) -> list[Measurement]:
    """The baseline without a restart policy (Debian's unit as shipped; a lab drop-in sets
    Restart=no over ours): nobody removes the VIP on the killed MASTER and the BACKUP claims it
    too. Observed for `observe` s, then started by hand. Seconds: how long both LBs held the VIP
    (bounded by `observe`: without a restart the split brain does not end by itself)."""
    set_drop_in(stack, stack.master, "keepalived", "[Service]\nRestart=no\n")
    try:
        return _repeat(runs, lambda: _split_brain_run(stack, "keepalived-kill-no-restart", observe))
    finally:
        set_drop_in(stack, stack.master, "keepalived", None)
        restore_frontdoor(stack)


def host_loss(stack: LabStack, runs: int = 1) -> list[Measurement]:
    """The MASTER's link cut (host loss as the network sees it): the BACKUP claims the VIP after 3
    missed adverts + skew. Details: overlap when the link comes back and the MASTER preempts."""
    master = stack.host(stack.master)

    def back(sampler: VipSampler) -> dict[str, Any]:
        t_up = time.monotonic()
        master.link_up()
        wait_for(lambda: vip_holders(stack) == (stack.master,), "the MASTER to take the VIP back", 20)
        time.sleep(0.2)
        return {"preempt_back_s": round(time.monotonic() - t_up, 3),
                "longest_both_on_return_s": round(sampler.longest_both(t_up), 3)}

    name = f"host-loss-advert-{stack.spec.load_balancer.advert_interval_ms}ms"
    return _repeat(runs, lambda: _vip_run(stack, name, master.link_down, extra=back))


def _stats_probe(stack: LabStack, lb: str, duration: float) -> Probe:
    url = f"http://{stack.host(lb).ip}:{stack.spec.load_balancer.haproxy.stats_port}/stats;csv"
    return Probe(stack, "stats", "--url", url, "--password-file", stack.client_file("stats-password"),
                 "--interval", f"{PROBE_S:g}", "--timeout", "1", duration=duration)


def _apiserver_drop_run(stack: LabStack) -> Measurement:
    victim = stack.host(CP_NAMES[0])
    down: dict[str, float] = {}
    with front_door_run(stack), \
            _stats_probe(stack, stack.master, 20) as on_master, _stats_probe(stack, stack.backup, 20) as on_backup, \
            Probe(stack, "https", "--target", f"{stack.vip}:{APISERVER_PORT}", "--ca",
                  stack.client_file("kubernetes-ca.crt"), "--interval", "0.1", "--timeout", "5",
                  duration=20) as clients:
        stats = {stack.master: on_master, stack.backup: on_backup}
        time.sleep(BEFORE_FAULT_S)
        t0 = time.monotonic()
        victim.exec_local(["systemctl", "kill", "-s", "SIGKILL", STANDIN_UNIT])
        t_dead = time.monotonic() + KILL_SETTLE_S  # later requests find the port closed (RST)

        def dropped() -> bool:
            for lb, probe in stats.items():
                for start, _end, text in probe.samples():
                    if start >= t0 and lb not in down and json.loads(text).get(victim.name, "").startswith("DOWN"):
                        down[lb] = start - t0
            return len(down) == len(stats)

        wait_for(dropped, f"HAProxy on both LBs to mark {victim.name} DOWN", 20)
        time.sleep(1.0)  # clients keep going a little after the drop
        clients.stop()
    answers = [(s, e, json.loads(text)) for s, e, text in clients.samples() if s >= t0]
    failed = [a for a in answers if not a[2].get("ok")]
    # A request HAProxy had already connected to the stand-in when it died is lost (EOF): no TCP
    # proxy can save an established connection. Every request started after that must succeed
    # (redispatch on refused connects, then the backend is DOWN).
    in_flight = [a for a in failed if a[0] <= t_dead]
    return Measurement("apiserver-drop", round(down[stack.master], 3), {
        "down_on_backup_lb_s": round(down[stack.backup], 3),
        "client_requests": len(answers), "client_failures": len(failed) - len(in_flight),
        "client_failures_in_flight_at_kill": len(in_flight),
        "client_errors": sorted({str(a[2].get("error")) for a in failed}),
        "slowest_client_request_s": round(max(e - s for s, e, _ in answers), 3) if answers else None,
        "served_by_dead_backend_after_drop": len([a for a in answers if a[2].get("cn") == victim.name
                                                  and a[0] - t0 > down[stack.master]]),
        "check": {"interval_ms": stack.spec.load_balancer.haproxy.check_interval_ms,
                  "fall": stack.spec.load_balancer.haproxy.fall}})


def apiserver_drop(stack: LabStack, runs: int = 1) -> list[Measurement]:
    """One apiserver stand-in SIGKILLed: seconds until HAProxy on the MASTER marks it DOWN (its stats
    page, polled every 50 ms). Details: the BACKUP's HAProxy, and TLS GET /readyz through the VIP
    every 100 ms meanwhile (failures, slowest answer: `option redispatch` retries elsewhere)."""
    return _repeat(runs, lambda: _apiserver_drop_run(stack))


def _lb_restart_run(stack: LabStack) -> Measurement:
    with front_door_run(stack), VipSampler(stack) as sampler, _vip_probe(stack, 60) as probe:
        time.sleep(BEFORE_FAULT_S)
        t0 = time.monotonic()
        phases = {}
        for lb in (stack.backup, stack.master):
            start = time.monotonic()
            stack.host(lb).run("systemctl restart haproxy && systemctl restart keepalived")
            frontdoor_steady(stack)
            phases[lb] = round(time.monotonic() - start, 3)
        samples = [s for s in probe.samples() if s[0] >= t0]
        failed = [s for s in samples if not s[2].startswith("1")]
        return Measurement("lb-restart", round(sampler.longest_both(t0), 3), {
            "both_spans": len(sampler.both_spans(t0)), "vip_moves": sampler.moves(t0),
            "client_probes": len(samples), "client_failures": len(failed),
            "client_errors": sorted({s[2][2:] for s in failed}),
            "advert_interval_s": stack.advert_interval_s, "restart_and_settle_s": phases})


def lb_restart(stack: LabStack, runs: int = 1) -> list[Measurement]:
    """`systemctl restart haproxy`, then keepalived, first on the BACKUP, then on the MASTER (a
    rolling restart, as a package upgrade does). Seconds: the longest time both LBs held the VIP
    (sampled every 20 ms). Details: client connection failures meanwhile."""
    return _repeat(runs, lambda: _lb_restart_run(stack))


# ------------------------------------------------------------------------ etcd
def etcd_status(stack: LabStack, endpoints: str | None = None) -> list[dict[str, Any]]:
    done = stack.etcdctl("endpoint", "status", "-w", "json", endpoints=endpoints, timeout=2)
    try:
        status: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        return []
    return status


def etcd_leader(stack: LabStack) -> str | None:
    """The leader's member name (by its client URL), when the members agree on one."""
    by_url = {f"https://{stack.host(n).ip}:2379": n for n in ETCD_NAMES}
    status = etcd_status(stack)
    ids = {s["Status"]["header"]["member_id"]: by_url.get(s["Endpoint"]) for s in status}
    leaders = {s["Status"]["leader"] for s in status}
    return ids.get(leaders.pop()) if len(leaders) == 1 else None


def etcd_healthy(stack: LabStack) -> bool:
    return bool(stack.etcdctl("endpoint", "health", timeout=2).returncode == 0)


def etcd_steady(stack: LabStack, timeout: float = SETTLE_TIMEOUT_S) -> str:
    """Every member running and healthy, one leader; returns its name."""
    for name in ETCD_NAMES:
        stack.host(name).run("systemctl start etcd")
    wait_for(lambda: etcd_healthy(stack), "every etcd member healthy", timeout, interval=0.2)
    found: list[str] = []

    def has_leader() -> bool:
        leader = etcd_leader(stack)
        if leader:
            found.append(leader)
        return leader is not None

    wait_for(has_leader, "one etcd leader", timeout, 0.2)
    return found[-1]


def _etcd_probe(stack: LabStack, mode: str, duration: float, endpoints: str | None = None) -> Probe:
    return Probe(stack, mode, "--endpoints", endpoints or stack.etcd_endpoints,
                 "--cacert", stack.client_file("etcd-ca.crt"), "--cert", stack.client_file("etcd-client.crt"),
                 "--key", stack.client_file("etcd-client.key"), "--interval", "0.1", "--timeout", "1",
                 duration=duration)


def elected(samples: list[tuple[float, float, str]], t0: float, term0: int) -> float | None:
    """End of the first `endpoint status` sample after t0 in which a member follows a leader of a
    newer term than the one killed, relative to t0."""
    for start, end, text in samples:
        views = [v for v in json.loads(text).values() if isinstance(v, list)]
        if start >= t0 and any(leader and term > term0 for leader, term in views):
            return round(end - t0, 3)
    return None


def first_write(samples: list[tuple[float, float, str]], since: float, origin: float | None = None) -> float | None:
    """End of the first successful put started after `since` (e.g. once the kill had returned, so
    the dead leader cannot have served it), relative to `origin` (default: `since`)."""
    ok = [end for start, end, text in samples if start >= since and text.startswith("0 ")]
    return round(min(ok) - (since if origin is None else origin), 3) if ok else None


def _leader_kill_run(stack: LabStack) -> Measurement:
    leader = etcd_steady(stack)
    survivors = ",".join(f"https://{stack.host(n).ip}:2379" for n in ETCD_NAMES if n != leader)
    term0 = max(s["Status"]["raftTerm"] for s in etcd_status(stack))
    try:
        with _etcd_probe(stack, "etcdput", 20) as writes, _etcd_probe(stack, "etcdstatus", 20, survivors) as status:
            time.sleep(BEFORE_FAULT_S)
            t0 = time.monotonic()
            stack.host(leader).exec_local(["pkill", "-KILL", "-x", "etcd"])
            dead = time.monotonic()
            wait_for(lambda: first_write(writes.samples(), dead) is not None
                     and elected(status.samples(), t0, term0) is not None,
                     "a new leader and a successful write after the leader was killed", 20,
                     explain=lambda: f"killed {leader} (term {term0}); writes: {writes.tail(dead)}; "
                                     f"status: {status.tail(t0)}")
        after = etcd_steady(stack)
        return Measurement("etcd-leader-kill", first_write(writes.samples(), dead, t0), {
            "killed": leader, "leader_after": after, "inject_s": round(dead - t0, 3),
            "new_leader_seen_s": elected(status.samples(), t0, term0),
            "failed_puts_started_after_kill": len([s for s in writes.samples()
                                                   if s[0] >= dead and not s[2].startswith("0 ")]),
            "timers": {"heartbeat_ms": stack.spec.etcd.heartbeat_interval_ms,
                       "election_ms": stack.spec.etcd.election_timeout_ms}})
    finally:
        etcd_steady(stack)


def etcd_leader_kill(stack: LabStack, runs: int = 1) -> list[Measurement]:
    """The leader's etcd SIGKILLed (its unit restarts it after RestartSec=1s). Seconds: until the
    first successful `etcdctl put` started after the kill. Details: when the survivors first
    reported a leader of a newer term (polled every 100 ms), who leads afterwards."""
    return _repeat(runs, lambda: _leader_kill_run(stack))


def _quorum_loss_run(stack: LabStack) -> Measurement:
    leader = etcd_steady(stack)
    victims = [leader, next(n for n in ETCD_NAMES if n != leader)]  # the survivor is a follower
    survivor = next(n for n in ETCD_NAMES if n not in victims)
    alone = f"https://{stack.host(survivor).ip}:2379"
    try:
        for name in victims:
            stack.host(name).exec_local(["bash", "-c", "systemctl kill -s SIGKILL etcd; systemctl stop etcd"])
        time.sleep(stack.spec.etcd.election_timeout_ms / 1000 * 2)
        put = stack.etcdctl("put", "/k8s-ha-lab/quorum", "lost", timeout=2)
        health = stack.etcdctl("endpoint", "health", timeout=2)
        status = stack.etcdctl("endpoint", "status", "-w", "table", timeout=2)
        survivor_health = stack.etcdctl("endpoint", "health", endpoints=alone, timeout=2)
        survivor_status = stack.etcdctl("endpoint", "status", "-w", "table", endpoints=alone, timeout=2)
        t1 = time.monotonic()
        with _etcd_probe(stack, "etcdput", 40) as writes:
            for name in victims:
                stack.host(name).run("systemctl start etcd")
            wait_for(lambda: etcd_healthy(stack), "every member healthy again", 30, 0.1)
            healthy_s = time.monotonic() - t1  # includes the `systemctl start`s themselves
            wait_for(lambda: first_write(writes.samples(), t1) is not None, "a successful write after the restart", 30)
        write_s = first_write(writes.samples(), t1)
        return Measurement("etcd-quorum-loss", round(max(healthy_s, write_s or 0.0), 3), {
            "killed": victims, "survivor": survivor,
            "put_rc": put.returncode, "put_error": _last_line(put.stderr),
            "health_rc": health.returncode, "health_output": _tail(health.stdout + health.stderr, 4),
            "status_rc": status.returncode, "status_errors": _tail(status.stderr, 2),
            "survivor_health_rc": survivor_health.returncode,
            "survivor_status_rc": survivor_status.returncode,
            "survivor_status_row": _tail(survivor_status.stdout, 2)[:1],
            "healthy_after_start_s": round(healthy_s, 3), "first_write_after_start_s": write_s})
    finally:
        etcd_steady(stack)


def etcd_quorum_loss(stack: LabStack, runs: int = 1) -> list[Measurement]:
    """Two of three members SIGKILLed and held down (`systemctl stop` right after, so that the
    unit's restart does not bring them back): writes must fail with a clear status. Then both
    are started again. Seconds: from that start until every member is healthy and a write succeeded."""
    return _repeat(runs, lambda: _quorum_loss_run(stack))


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _tail(text: str, n: int) -> list[str]:
    return [line for line in text.strip().splitlines() if line.strip()][-n:]


FRONT_DOOR_DRILLS: dict[str, Callable[[LabStack, int], list[Measurement]]] = {
    "haproxy-kill": haproxy_kill,
    "haproxy-kill-restarted": haproxy_kill_restarted,
    "keepalived-stop": keepalived_stop,
    "keepalived-kill": keepalived_kill,
    "keepalived-kill-no-restart": keepalived_kill_no_restart,
    "host-loss": host_loss,
    "apiserver-drop": apiserver_drop,
    "lb-restart": lb_restart,
}
ETCD_DRILLS: dict[str, Callable[[LabStack, int], list[Measurement]]] = {
    "etcd-leader-kill": etcd_leader_kill,
    "etcd-quorum-loss": etcd_quorum_loss,
}
