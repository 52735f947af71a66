"""The combined drill on the lab cluster: power off the MASTER load balancer, master 2 and
worker 2 at the same moment (`virsh destroy` of the three), then power them on again.

Observed (the test asserts what must hold; the numbers go to bench/results/cluster.json):
* the longest gap in answers from the API through the VIP: an authenticated GET of a namespace
  (a quorum read through HAProxy, the apiserver and etcd) started every 100 ms from the operator's
  workstation whether or not the last one answered, each bounded by 1 s (tests/lab/probe.py https
  --overlap: one request stuck on the dead path must not hide the answers after it);
* controller-manager and scheduler leadership: both are moved onto master 2 first (their leader
  on master 1 is stopped once), so the drill always shows the hand-over back to master 1;
* the test Deployment's pod on worker 2: seconds until the Deployment has all its replicas Ready
  again with none on worker 2 (kubernetes.failover decides it: NotReady after the grace period,
  evicted after the toleration);
* after power-on: seconds until every node is Ready again, the LB back as keepalived BACKUP and
  both HAProxies seeing both apiservers UP - with no manual step.
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.checklist import NAMESPACE, SERVICE, echo_pods, haproxy_backends, leases, wait_all_ready
from tests.cluster.cluster import ClusterSteps as ClusterStack
from tests.guests.drills import (
    PROBE,
    DrillError,
    Lines,
    Measurement,
    VipWatch,
    _vip_onto,
    keepalived_state,
    samples,
    wait_for,
)

LB_VICTIM, CP_VICTIM, WORKER_VICTIM = "lb1", "cp2", "worker2"
VICTIMS = (LB_VICTIM, CP_VICTIM, WORKER_VICTIM)
LEASE_COMPONENTS = {"kube-controller-manager": "kube-controller-manager", "kube-scheduler": "kube-scheduler"}
API_PATH = "/api/v1/namespaces/kube-system"
RESCHEDULE_TIMEOUT_S = 1200
REJOIN_TIMEOUT_S = 1200


def admin_files(c: ClusterStack) -> dict[str, Path]:
    """The exported kubeconfig's CA and admin client identity as files, for the probe."""
    config = yaml.safe_load(c.kubeconfig.read_text())
    data = {"ca": config["clusters"][0]["cluster"]["certificate-authority-data"],
            "cert": config["users"][0]["user"]["client-certificate-data"],
            "key": config["users"][0]["user"]["client-key-data"]}
    files = {}
    for name, value in data.items():
        path = c.ssh_dir / f"api-{name}.pem"
        path.write_bytes(base64.b64decode(value))
        path.chmod(0o600)
        files[name] = path
    return files


def api_probe(c: ClusterStack, duration: float) -> Lines:
    files = admin_files(c)
    return Lines(c.netns_argv([
        "/usr/bin/python3", str(PROBE), "https", "--target", f"{c.vip}:6443", "--path", API_PATH,
        "--ca", str(files["ca"]), "--cert", str(files["cert"]), "--key", str(files["key"]),
        "--interval", "0.1", "--timeout", "1", "--overlap", "--duration", f"{duration:g}"]))


def longest_gap(probe: Lines, since: float, until: float) -> dict[str, Any]:
    """The longest time between two answers (or from `since` to the first answer) in the window,
    and how many requests failed."""
    every = samples(probe)
    rows = [(start, end, text) for start, end, text in every if since - 1 <= start <= until]
    answered = sorted(end for _start, end, text in every if '"ok": true' in text)
    failed = [start for start, _end, text in rows if '"ok": true' not in text]
    after = [t for t in answered if t > until]
    marks = [since, *[t for t in answered if since <= t <= until], after[0] if after else until]
    gaps = [b - a for a, b in itertools.pairwise(marks)]
    # Every request of the first 15 s after the fault, (start, seconds taken, answered or the error),
    # so that a gap can be taken apart afterwards.
    early = [[round(start - since, 2), round(end - start, 2), "ok" if '"ok": true' in text else text[:120]]
             for start, end, text in rows if start <= since + 15]
    return {"longest_gap_s": round(max(gaps, default=until - since), 2), "failed_requests": len(failed),
            "requests": len(rows), "first_failure_s": round(min(failed) - since, 2) if failed else None,
            "first_15_s": early}


def _leaders_onto(c: ClusterStack, wanted: str, timeout: float = 600) -> dict[str, float]:
    """Make `wanted` hold both leases: stop the leader's container wherever else it runs (the kubelet
    starts it again, as a standby), as often as another standby wins. Seconds each hand-over took."""
    moved = {}
    for lease, container in LEASE_COMPONENTS.items():
        started = time.monotonic()
        while (holder := _safe_leases(c).get(lease, {}).get("holder")) != wanted:
            if time.monotonic() - started > timeout:
                raise DrillError(f"{lease} leadership did not move to {wanted} within {timeout:g} s (on {holder})")
            if holder is not None:
                # The stopped leader's restarted container may win the lease again: wait for another
                # identity, not another node, and stop that one too if it is still not on `wanted`.
                identity = _safe_leases(c).get(lease, {}).get("identity")
                crictl = "crictl --runtime-endpoint unix:///run/containerd/containerd.sock"
                c.run(holder, f"{crictl} stop $({crictl} ps -q --name {container})")
                wait_for(lambda lease=lease, identity=identity: _safe_leases(c).get(lease, {}).get("identity")
                         not in (identity, None), f"{lease} leadership to leave {holder}'s stopped leader", timeout, 1)
            else:
                time.sleep(1)
        moved[lease] = round(time.monotonic() - started, 1)
    return moved


def _rescheduled(c: ClusterStack, replicas: int) -> bool:
    try:
        pods = echo_pods(c)
    except Exception:  # the API may be briefly unreachable
        return False
    ready = [p for p in pods.values() if p["ready"] == "True" and p["node"] != WORKER_VICTIM]
    return len(ready) >= replicas


def _power(c: ClusterStack, names: tuple[str, ...], on: bool) -> float:
    """Every named guest cut (or started) at the same moment; the instant just before."""
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(c.power_on if on else c.power_off, names))
    return t0


def seed_001(c: ClusterStack) -> Measurement:
    replicas = len(echo_pods(c))
    before_pods = echo_pods(c)
    if not any(p["node"] == WORKER_VICTIM for p in before_pods.values()):
        raise DrillError(f"no test pod on {WORKER_VICTIM} before the drill: {before_pods}")
    leaders_moved_s = _leaders_onto(c, CP_VICTIM)
    with VipWatch(c) as watch:
        wait_for(lambda: len(watch.holders()) == 1, "exactly one LB holding the VIP", 300, 1)
        _vip_onto(c, watch, [LB_VICTIM])
        probe = api_probe(c, RESCHEDULE_TIMEOUT_S + 120)
        try:
            time.sleep(3.0)
            leases_before = leases(c)
            t0_wall = time.time()
            t0 = _power(c, VICTIMS, on=False)
            watch.cut(VICTIMS, t0)
            c.log(f"seed 001: powered off {VICTIMS}")
            try:
                survivors = tuple(n for n in c.roles.masters if n != CP_VICTIM)
                wait_for(lambda: _held_by(c, survivors), f"both leases held by {survivors}", 600, 1)
                leases_moved_s = round(time.monotonic() - t0, 1)
                wait_for(lambda: _rescheduled(c, replicas), f"the test pods running without {WORKER_VICTIM}",
                         RESCHEDULE_TIMEOUT_S, 1)
                rescheduled_s = round(time.monotonic() - t0, 1)
                until = time.monotonic()
                reschedule_steps = _reschedule_steps(c, t0_wall, set(before_pods))
            except DrillError:
                _power(c, VICTIMS, on=True)  # leave the cluster whole for what runs next
                raise
            api = longest_gap(probe, t0, until)
            holders_during = watch.holders()
        finally:
            probe.stop()
        c.log(f"seed 001: API longest gap {api['longest_gap_s']} s ({api['failed_requests']} failed requests), "
              f"leases on {survivors} after {leases_moved_s} s, pods rescheduled after {rescheduled_s} s")
        t1 = _power(c, VICTIMS, on=True)
        back_ssh = {n: round(c.wait_for_ssh(n, t1), 1) for n in VICTIMS}
        wait_all_ready(c, REJOIN_TIMEOUT_S)
        ready_s = round(time.monotonic() - t1, 1)
        watch.restart(LB_VICTIM)
        wait_for(lambda: "BACKUP" in keepalived_state(c, LB_VICTIM), f"{LB_VICTIM}'s keepalived in BACKUP", 300, 2)
        wait_for(lambda: all(s == "UP" for lb in haproxy_backends(c).values() for s in lb.values()),
                 "both HAProxies seeing every apiserver UP", 600, 3)
        rejoined_s = round(time.monotonic() - t1, 1)
        both = watch.both_samples(t0 - 1.0)
    return Measurement("seed-001-lb-master-worker", api["longest_gap_s"], {
        "victims": list(VICTIMS), "api": api, "leases_before": leases_before, "leaders_moved_to_cp2_s": leaders_moved_s,
        "leases_on_survivors_after_s": leases_moved_s, "pods_rescheduled_s": rescheduled_s,
        "reschedule_steps_s": reschedule_steps,
        "pods_before": before_pods, "pods_after": echo_pods(c), "vip_holders_during": list(holders_during),
        "both_held_vip_at_s": both, "restarted_ssh_s": back_ssh, "all_ready_after_power_on_s": ready_s,
        "rejoined_s": rejoined_s, "haproxy_after": haproxy_backends(c), "leases_after": leases(c),
        "namespace": NAMESPACE, "service": SERVICE})


def _reschedule_steps(c: ClusterStack, t0_wall: float, before: set[str]) -> dict[str, float | None]:
    """Where the time to a Ready replacement went, from the API's own timestamps (whole seconds)
    after the power cut: worker 2 NotReady (grace period), its pod evicted (the toleration), the
    replacement created and Ready."""
    def after(stamp: str | None) -> float | None:
        if not stamp:
            return None
        return round(datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() - t0_wall, 1)

    node = c.kubectl_json("get", "node", WORKER_VICTIM)
    ready: dict[str, Any] = next((x for x in node["status"]["conditions"] if x["type"] == "Ready"), {})
    pods = c.kubectl_json("get", "pods", "-n", NAMESPACE, "-l", f"app={SERVICE}")["items"]
    evicted = [p for p in pods if p["spec"].get("nodeName") == WORKER_VICTIM]
    new = [p for p in pods if p["metadata"]["name"] not in before]
    new_ready = [x.get("lastTransitionTime") for p in new for x in p["status"].get("conditions", [])
                 if x["type"] == "Ready" and x["status"] == "True"]
    return {"node_not_ready": after(ready.get("lastTransitionTime")),
            "pod_evicted": min((e for p in evicted if (e := _deleted_at(p, after)) is not None), default=None),
            "replacement_created": after(min((p["metadata"]["creationTimestamp"] for p in new), default=None)),
            "replacement_ready": after(max(new_ready, default=None))}


def _deleted_at(pod: dict[str, Any], after: Callable[[str | None], float | None]) -> float | None:
    """When the pod was deleted: its deletionTimestamp is that instant plus the grace period."""
    seconds = after(pod["metadata"].get("deletionTimestamp"))
    return None if seconds is None else round(seconds - int(pod["metadata"].get("deletionGracePeriodSeconds", 0)), 1)


def _held_by(c: ClusterStack, nodes: tuple[str, ...]) -> bool:
    held = _safe_leases(c)
    return set(held) == set(LEASE_COMPONENTS) and all(v["holder"] in nodes for v in held.values())


def _safe_leases(c: ClusterStack) -> dict[str, dict[str, Any]]:
    try:
        return leases(c)
    except Exception:  # the API may be briefly unreachable
        return {}
