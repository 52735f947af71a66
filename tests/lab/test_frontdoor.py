"""The front door on lab hosts: the real loadbalancer step over SSH, the VRRP VIP, HAProxy with
TLS health checks in front of three kube-apiserver STAND-INs, and the failover drills (one run
each; bench/lab_failover.py repeats them and reports the times).

Nothing here asserts a duration. Each drill asserts what must hold: the VIP moved, the client
got answers again, no split brain longer than one advert interval, the dead backend was dropped.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Iterator

import pytest

from k8s_ha.model.timers import ADVERT_INTERVAL_MS
from k8s_ha.render.material import ssh_host_pub
from k8s_ha.render.tree import host_steps
from tests.lab import drills
from tests.lab.conftest import KeyStore
from tests.lab.labhosts import LabCommandError
from tests.lab.stack import (
    CP_NAMES,
    HOST_NAMES,
    LB_NAMES,
    STANDIN_PKI,
    STANDIN_UNIT,
    LabStack,
    StepRun,
    lab_stack,
)
from tests.support.material import Authority

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def booted(lab_available: None, lab_keys: KeyStore) -> Iterator[tuple[LabStack, list[StepRun]]]:
    """One lab for the module, bootstrapped through the front door (every host ready, both LBs)."""
    with lab_stack(lab_keys) as stack:
        runs = stack.bootstrap(etcd=False)
        drills.frontdoor_steady(stack)
        yield stack, runs


@pytest.fixture
def stack(booted: tuple[LabStack, list[StepRun]]) -> LabStack:
    return booted[0]


def test_bootstrap_ran_every_planned_step_once_in_order(booted: tuple[LabStack, list[StepRun]]) -> None:
    stack, runs = booted
    ran = [(r.host, r.step) for r in runs]
    assert ran == [(name, "ready") for name in HOST_NAMES] + [(name, "loadbalancer") for name in LB_NAMES]
    for run in runs:  # a first run installs files, so it says so
        assert f"k8s-ha {run.step}: " in run.stdout and "file(s) changed" in run.stdout, run
    for name in HOST_NAMES:  # the lab ran the readiness step's own checks on the real host
        assert stack.host(name).run("cat /var/lib/k8s-ha/node.json").stdout == stack.steps(name)[0].files[0].content


def test_readiness_step_refuses_a_host_whose_key_is_not_the_pinned_one(stack: LabStack) -> None:
    wrong = {**stack.material, ssh_host_pub("lb1"): stack.host("lb2").host_key.public_key}
    step = host_steps(stack.spec, stack.placement, stack.node("lb1"), wrong)[0]
    assert step.name == "ready"
    with pytest.raises(LabCommandError) as failed:
        stack.run_step(step)
    assert "no SSH host key of lb1 matches the pinned key" in failed.value.stderr


def test_the_vip_sits_on_exactly_one_load_balancer(stack: LabStack) -> None:
    assert drills.vip_holders(stack) == (stack.master,)
    assert stack.vip in stack.host(stack.master).addresses()
    assert stack.vip not in stack.host(stack.backup).addresses()


def test_tls_through_the_vip_reaches_every_healthy_apiserver(stack: LabStack) -> None:
    seen: set[str] = set()

    def every_backend_answered() -> bool:
        answer = drills.https_through_vip(stack)
        assert answer["ok"] and answer["status"] == 200 and answer["body"] == "ok", answer
        seen.add(answer["cn"])
        return seen == set(CP_NAMES)

    # Round robin, but a backend that just came UP ramps its weight up over `slowstart 10s`.
    drills.wait_for(every_backend_answered, f"TLS answers from each of {CP_NAMES} (seen {seen})", 15, 0.05)
    for lb in LB_NAMES:
        assert drills.backend_status(stack, lb) == dict.fromkeys(CP_NAMES, "UP")


def test_a_backend_whose_certificate_is_not_from_the_cluster_ca_is_marked_down(stack: LabStack) -> None:
    """HAProxy's check verifies the backend's certificate against the cluster CA."""
    cp = stack.host(CP_NAMES[2])
    rogue_cert, rogue_key = Authority("not-the-cluster-ca").issue(cp.name, server=True, ips=[cp.ip])
    cp.run(f"""set -eu
        cd {STANDIN_PKI}
        cp standin.crt standin.crt.good && cp standin.key standin.key.good
        printf %s {shlex.quote(rogue_cert)} > standin.crt
        printf %s {shlex.quote(rogue_key)} > standin.key
        systemctl restart {STANDIN_UNIT}""")
    try:
        drills.wait_for(lambda: all(drills.backend_status(stack, lb).get(cp.name, "").startswith("DOWN")
                                    for lb in LB_NAMES), f"{cp.name} DOWN on both LBs", 20, 0.2)
        assert all(drills.https_through_vip(stack)["cn"] != cp.name for _ in range(4))
    finally:
        cp.run(f"cd {STANDIN_PKI} && mv standin.crt.good standin.crt && mv standin.key.good standin.key "
               f"&& systemctl restart {STANDIN_UNIT}")
        drills.frontdoor_steady(stack)


def _state(stack: LabStack) -> dict[str, dict[str, str]]:
    units = {**dict.fromkeys(LB_NAMES, ("haproxy.service", "keepalived.service")),
             **dict.fromkeys(CP_NAMES, (STANDIN_UNIT,))}
    return {name: {**stack.file_digests(name), **stack.main_pids(name, units.get(name, ()))}
            for name in HOST_NAMES}


def test_running_every_bundle_again_changes_nothing(stack: LabStack) -> None:
    drills.frontdoor_steady(stack)
    before = _state(stack)
    runs = stack.rerun(etcd=False)
    assert [(r.host, r.step) for r in runs] == [(n, "ready") for n in HOST_NAMES] + [(n, "loadbalancer")
                                                                                      for n in LB_NAMES]
    for run in runs:
        assert run.changed_nothing, f"{run.host} {run.step}:\n{run.stdout}\n{run.stderr}"
        assert "updated " not in run.stderr and "restarted" not in run.stderr and "reloaded" not in run.stderr
    after = _state(stack)
    assert after == before
    assert any(".service" in key for key in after["lb1"])  # the comparison did include the daemons
    assert drills.vip_holders(stack) == (stack.master,)


def test_a_changed_setting_reloads_keepalived_in_place(stack: LabStack) -> None:
    """A config change re-runs the step: the file changes, keepalived reloads (same PID), no VIP move."""
    pid = stack.main_pids(stack.master, ["keepalived.service"])
    digest = hashlib.sha256(stack.host(stack.master).run("cat /etc/keepalived/keepalived.conf").stdout.encode())
    try:
        stack.retune(load_balancer={"advertIntervalMs": 1000})
        with drills.VipSampler(stack) as sampler:
            runs = stack.run_steps(LB_NAMES, "loadbalancer")
        assert all("1 file(s) changed" in r.stdout and "reloaded keepalived" in r.stderr for r in runs), runs
        assert "advert_int 1\n" in stack.host(stack.master).run("cat /etc/keepalived/keepalived.conf").stdout
        assert stack.main_pids(stack.master, ["keepalived.service"]) == pid
        assert sampler.moves(0.0) == 0 and drills.vip_holders(stack) == (stack.master,)
    finally:
        stack.retune(load_balancer={"advertIntervalMs": ADVERT_INTERVAL_MS})
        stack.run_steps(LB_NAMES, "loadbalancer")
    after = hashlib.sha256(stack.host(stack.master).run("cat /etc/keepalived/keepalived.conf").stdout.encode())
    assert after.hexdigest() == digest.hexdigest()


def _nices(stack: LabStack, name: str, daemon: str) -> set[int]:
    """The nice value of every process of `daemon` on `name`."""
    out = stack.host(name).run(f"ps -o ni= -C {daemon}").stdout.split()
    return {int(value) for value in out}


def test_a_changed_daemon_priority_applies_without_a_restart(stack: LabStack) -> None:
    """keepalived (and the check it forks) and HAProxy run ahead of other work on the node; a
    deployment made before their Nice= gets it from the next step run, same PIDs, VIP still put."""
    master, units = stack.master, ["keepalived.service", "haproxy.service"]
    assert _nices(stack, master, "keepalived") == {-15} and _nices(stack, master, "haproxy") == {-10}
    pids = stack.main_pids(master, units)
    drop_ins = "/etc/systemd/system/keepalived.service.d/k8s-ha.conf /etc/systemd/system/haproxy.service.d/k8s-ha.conf"
    stack.host(master).run(f"sed -i '/^Nice=/d' {drop_ins}; renice -n 0 -p $(pgrep -d ' ' -x 'keepalived|haproxy')")
    assert _nices(stack, master, "keepalived") == {0} == _nices(stack, master, "haproxy")
    with drills.VipSampler(stack) as sampler:
        [run] = stack.run_steps([master], "loadbalancer")
    assert "2 file(s) changed" in run.stdout, run
    assert "keepalived now runs at nice -15" in run.stderr and "haproxy now runs at nice -10" in run.stderr, run
    assert _nices(stack, master, "keepalived") == {-15} and _nices(stack, master, "haproxy") == {-10}
    assert stack.main_pids(master, units) == pids
    assert sampler.moves(0.0) == 0 and drills.vip_holders(stack) == (master,)


def test_a_removed_load_balancer_gives_up_the_vip_and_comes_back_with_apply(stack: LabStack) -> None:
    """The loadbalancer step's delete (`destroy`, or the host leaving the stack) on a host that stays
    up, as an existing host does: keepalived and HAProxy stopped and disabled, k8s-ha's files gone,
    the VIP on the other load balancer; safe to re-run; the apply brings it back."""
    (step,) = [s for s in stack.lab_steps(stack.master) if s.name == "loadbalancer"]
    host = stack.host(stack.master)
    try:
        removed = stack.run_step(step, "delete")
        assert drills.vip_holders(stack) == (stack.backup,), removed.stderr
        assert drills.vip_answers(stack), "the other load balancer serves the VIP"
        for unit in ("keepalived", "haproxy"):
            assert host.run(f"systemctl is-active {unit}", check=False).stdout.strip() != "active", unit
            assert host.run(f"systemctl is-enabled {unit}", check=False).stdout.strip() != "enabled", unit
        left = host.run("ls /etc/keepalived/keepalived.conf /etc/haproxy/haproxy.cfg /etc/haproxy/kubernetes-ca.crt",
                        check=False)
        assert not left.stdout.strip(), left.stdout
        again = stack.run_step(step, "delete")
        assert "stopped" not in again.stderr and "removed /" not in again.stderr, again.stderr
    finally:
        stack.run_step(step)
    drills.frontdoor_steady(stack)


# ---------------------------------------------------------------------- drills
def test_haproxy_killed_on_the_master_moves_the_vip_to_the_backup(stack: LabStack) -> None:
    (m,) = drills.haproxy_kill(stack)
    assert m.details["failed_probes"] > 0  # the client did see the dead HAProxy ...
    assert m.seconds is not None  # ... and was answered again
    assert m.details["holders_after"] == [stack.backup]
    assert m.details["longest_both_s"] <= stack.advert_interval_s


def test_haproxy_killed_comes_back_through_its_unit(stack: LabStack) -> None:
    (m,) = drills.haproxy_kill_restarted(stack)
    assert m.details["nrestarts"] >= 1
    assert m.seconds is not None
    assert m.details["longest_both_s"] <= stack.advert_interval_s


def test_keepalived_stopped_on_the_master_hands_the_vip_over(stack: LabStack) -> None:
    (m,) = drills.keepalived_stop(stack)
    assert m.seconds is not None and m.details["holders_after"] == [stack.backup]
    assert m.details["longest_both_s"] <= stack.advert_interval_s


def test_keepalived_killed_on_the_master_comes_back_without_split_brain(stack: LabStack) -> None:
    """As deployed, the load-balancer step's drop-in restarts a killed keepalived at once."""
    (m,) = drills.keepalived_kill(stack)
    assert m.details["keepalived_restarted_by_unit"]
    assert m.details["longest_both_s"] <= stack.advert_interval_s
    assert drills.vip_holders(stack) == (stack.master,)


def test_without_a_restart_policy_a_killed_keepalived_leaves_a_split_brain(stack: LabStack) -> None:
    """Why the drop-in exists: with Debian's unit as shipped, the killed MASTER keeps the VIP and
    the BACKUP claims it too, until keepalived runs again."""
    (m,) = drills.keepalived_kill_no_restart(stack)
    assert not m.details["keepalived_restarted_by_unit"]
    assert m.details["both_from_s"] is not None, "the BACKUP should have claimed the VIP"
    assert m.details["both_when_observation_ended"], "nothing removes the VIP from the killed MASTER"
    assert m.details["split_brain_ended_after_start_s"] is not None
    assert drills.vip_holders(stack) == (stack.master,)


def test_losing_the_master_host_moves_the_vip_and_it_comes_back(stack: LabStack) -> None:
    (m,) = drills.host_loss(stack)
    assert m.seconds is not None and m.details["vip_on_backup_s"] is not None
    assert m.details["longest_both_s"] == 0.0  # the cut-off MASTER drops the VIP (FAULT state)
    assert m.details["longest_both_on_return_s"] <= stack.advert_interval_s


def test_a_dead_apiserver_is_dropped_and_new_requests_never_fail(stack: LabStack) -> None:
    """Only a request already connected to the dying stand-in can fail (EOF); every request started
    after the kill is redispatched or sent to a live backend."""
    (m,) = drills.apiserver_drop(stack)
    assert m.seconds is not None and m.details["down_on_backup_lb_s"] is not None, m.details
    assert m.details["served_by_dead_backend_after_drop"] == 0, m.details
    assert m.details["client_requests"] > 0 and m.details["client_failures"] == 0, json.dumps(m.details)
    assert m.details["client_failures_in_flight_at_kill"] <= 1, m.details  # requests run every 100 ms


def test_restarting_both_load_balancers_one_by_one(stack: LabStack) -> None:
    (m,) = drills.lb_restart(stack)
    assert m.seconds is not None and m.seconds <= stack.advert_interval_s, m.details
    assert m.details["vip_moves"] >= 2  # the MASTER's restart hands the VIP over and takes it back
    assert drills.vip_holders(stack) == (stack.master,)
