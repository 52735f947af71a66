"""The external etcd cluster on lab hosts: the real etcd-member steps (in parallel, as the program
runs them) and the etcd-health gate over SSH, TLS with client-certificate auth, the snapshot
backup, a second run that changes nothing, and the etcd drills (one run each; the benchmark
repeats them). Nothing here asserts a duration.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.lab import drills
from tests.lab.conftest import KeyStore
from tests.lab.labhosts import LabCommandError
from tests.lab.stack import ETCD_NAMES, HOST_NAMES, LabStack, StepRun, lab_stack
from tests.support.material import Authority

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def booted(lab_available: None, lab_keys: KeyStore) -> Iterator[tuple[LabStack, list[StepRun]]]:
    """One lab for the module: every host ready, the three members, then the health gate."""
    with lab_stack(lab_keys) as stack:
        runs = stack.bootstrap(front_door=False)
        yield stack, runs


@pytest.fixture
def stack(booted: tuple[LabStack, list[StepRun]]) -> LabStack:
    drills.etcd_steady(booted[0])
    return booted[0]


def test_bootstrap_forms_a_healthy_three_member_cluster(booted: tuple[LabStack, list[StepRun]]) -> None:
    stack, runs = booted
    assert [(r.host, r.step) for r in runs] == (
        [(n, "ready") for n in HOST_NAMES] + [(n, "etcd-member") for n in ETCD_NAMES] + [("etcd1", "etcd-health")])
    health = runs[-1].stdout
    assert all(f"https://{stack.host(n).ip}:2379 is healthy" in health for n in ETCD_NAMES), health
    members = stack.etcdctl("member", "list", "-w", "json", check=True)
    names = sorted(m["name"] for m in json.loads(members.stdout)["members"])
    assert names == list(ETCD_NAMES)
    assert drills.etcd_leader(stack) in ETCD_NAMES


def test_clients_need_a_certificate_from_the_etcd_ca(stack: LabStack, tmp_path_factory: pytest.TempPathFactory) -> None:
    assert stack.etcdctl("endpoint", "health", check=False).returncode == 0
    anonymous = stack.etcdctl("endpoint", "health", with_cert=False)
    assert anonymous.returncode != 0 and "is unhealthy" in anonymous.stderr
    log = stack.host("etcd1").run("cat /var/log/shim/etcd.service.log").stdout
    assert f'rejected connection from "{stack.lab.client_ip}' in log
    assert "client didn't provide a certificate" in log

    # A certificate from another CA (here: a fresh one) is refused too.
    cert, key = Authority("not-the-etcd-ca").issue("intruder", client=True)
    directory = stack.client_dir
    (directory / "intruder.crt").write_text(cert)
    (directory / "intruder.key").write_text(key)
    (directory / "intruder.key").chmod(0o600)
    intruder = stack.lab.client_run(
        ["etcdctl", f"--endpoints={stack.etcd_endpoints}", f"--cacert={stack.client_file('etcd-ca.crt')}",
         f"--cert={directory / 'intruder.crt'}", f"--key={directory / 'intruder.key'}",
         "--dial-timeout=2s", "--command-timeout=2s", "get", "/"], check=False)
    assert intruder.returncode != 0


def test_a_snapshot_backup_runs_and_verifies(stack: LabStack) -> None:
    member = stack.host("etcd1")
    stack.etcdctl("put", "/k8s-ha-lab/backup-marker", "present", check=True)
    member.run("systemctl start etcd-backup.service")
    listing = member.run("find /var/backups/etcd -name 'etcd-etcd1-*.db' -printf '%f %m %u\\n'").stdout.split()
    assert len(listing) == 3 and listing[1:] == ["600", "etcd"], listing
    status = json.loads(member.run(f"etcdctl snapshot status /var/backups/etcd/{listing[0]} -w json").stdout)
    assert status["totalKey"] >= 1 and status["revision"] >= 1
    assert "etcd-backup: saved" in member.run("cat /var/log/shim/etcd-backup.service.log").stdout
    assert member.run("systemctl is-active etcd-backup.timer").stdout.strip() == "active"


def test_running_every_bundle_again_changes_nothing(stack: LabStack) -> None:
    def state() -> dict[str, dict[str, str]]:
        return {n: {**stack.file_digests(n), **stack.main_pids(n, ["etcd.service"])} for n in ETCD_NAMES}

    before = state()
    runs = stack.rerun(front_door=False)
    for run in runs:
        assert run.changed_nothing, f"{run.host} {run.step}:\n{run.stdout}\n{run.stderr}"
        assert "updated " not in run.stderr and "restarted" not in run.stderr and "started" not in run.stderr
    assert state() == before
    assert any("cluster-state.env" in key for key in before["etcd1"])  # the state file was compared too


def test_a_removed_member_leaves_the_cluster_and_rejoins_with_member_add(stack: LabStack) -> None:
    """What `pulumi up` does when etcd3 leaves the stack (its step's delete action runs before the
    VM goes) and when it comes back (apply on an empty data directory: `member add`, then join)."""
    (step,) = [s for s in stack.lab_steps("etcd3") if s.name == "etcd-member"]

    def names() -> list[str]:
        listed = stack.etcdctl("member", "list", "-w", "json", check=True).stdout
        return sorted(m.get("name", "") for m in json.loads(listed)["members"])

    removed = stack.run_step(step, "delete")
    assert names() == ["etcd1", "etcd2"], removed.stderr
    kept = stack.host("etcd3").run("ls -d /var/lib/etcd* | sort").stdout.split()
    assert any(path != "/var/lib/etcd" for path in kept), "the old data is moved aside, never deleted"
    assert stack.host("etcd3").run("systemctl is-active etcd", check=False).stdout.strip() != "active"

    rejoined = stack.run_step(step)
    assert "adding etcd3 (https://" in rejoined.stderr and "STATE=existing" in rejoined.stderr, rejoined.stderr
    drills.etcd_steady(stack)
    assert names() == list(ETCD_NAMES)
    stack.etcdctl("put", "/k8s-ha-lab/after-rejoin", "ok", check=True)


def test_a_removal_that_would_lose_quorum_is_refused_and_changes_nothing(stack: LabStack) -> None:
    """With etcd1 down, removing etcd3 would leave etcd2 alone of two: refused, under the lock, with
    the numbers; the membership and etcd3 itself stay as they were."""
    (step,) = [s for s in stack.lab_steps("etcd3") if s.name == "etcd-member"]
    stack.host("etcd1").run("systemctl stop etcd")
    try:
        with pytest.raises(LabCommandError) as refused:
            stack.run_step(step, "delete")
        assert ("refusing to remove etcd3: the 2 members left would have 1 healthy, and quorum needs 2"
                in refused.value.stderr), refused.value.stderr
        assert stack.host("etcd3").run("systemctl is-active etcd", check=False).stdout.strip() == "active"
        assert stack.host("etcd3").run("test -d /var/lib/etcd/member", check=False).returncode == 0
    finally:
        stack.host("etcd1").run("systemctl start etcd")
    drills.etcd_steady(stack)
    listed = stack.etcdctl("member", "list", "-w", "json", check=True).stdout
    assert sorted(m.get("name", "") for m in json.loads(listed)["members"]) == list(ETCD_NAMES)


# ---------------------------------------------------------------------- drills
def test_leader_killed_a_new_leader_takes_writes(stack: LabStack) -> None:
    (m,) = drills.etcd_leader_kill(stack)
    assert m.details["new_leader_seen_s"] is not None
    assert m.seconds is not None  # a write started after the kill succeeded
    assert drills.etcd_healthy(stack)


def test_two_of_three_members_lost_writes_fail_clearly_then_recover(stack: LabStack) -> None:
    (m,) = drills.etcd_quorum_loss(stack)
    d = m.details
    assert d["put_rc"] != 0 and "deadline exceeded" in d["put_error"], d
    assert d["health_rc"] == 1 and d["health_output"][-1] == "Error: unhealthy cluster", d
    assert d["survivor_health_rc"] == 1
    # `endpoint status` of the survivor alone exits 0: the trouble is only in its ERRORS column.
    assert d["survivor_status_rc"] == 0 and any("no leader" in row for row in d["survivor_status_row"]), d
    assert d["first_write_after_start_s"] is not None and drills.etcd_healthy(stack)
