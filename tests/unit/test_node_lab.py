"""The node-container tier's pure parts, without root: the stack it builds, the machine-global
tunables it sets and puts back (also after a killed run), and the cgroup hierarchies it reads."""

from __future__ import annotations

import json
from pathlib import Path

from k8s_ha.placement.plan import plan_stack
from tests.nodes import tunables as t
from tests.nodes.cgroups import TierCgroups, hierarchies
from tests.nodes.config import CP_NAMES, NODES, RACKS, stack_config
from tests.nodes.stack import NETWORK_CONFIG

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAH1t5M3qprd9xNNrcKNP3gWgmbz++K8K2xm3AdtT/7h"
CHECKSUMS = {c: {v: "0" * 64} for c, v in (("crictl", "1.37.0"),)}


def test_the_node_stack_is_existing_hosts_over_three_racks_with_no_fatal_loss() -> None:
    plan = plan_stack(stack_config({n: KEY for n in NODES}, "10.213.0.1", {"checksums": CHECKSUMS}))
    nodes = {n.name: n for n in plan.placement.nodes}
    assert set(nodes) == set(NODES) and all(not n.is_vm for n in nodes.values())
    assert {n.failure_domain for n in nodes.values()} == {f"host:{r}" for r in RACKS.values()}
    assert all(loss.verdict != "down" for loss in plan.placement.losses), plan.placement.losses
    assert len(CP_NAMES) == 3
    # the only warning is the one the lab asks for: cgroup v1 hosts
    assert [w for w in plan.warnings if "cgroup v1" not in w] == []
    assert any("kubernetes.allowCgroupV1" in w for w in plan.warnings)


def test_the_nodes_network_config_names_the_nic_and_routes_through_the_gateway() -> None:
    text = NETWORK_CONFIG.format(ip="10.213.0.31", prefix="24", gateway="10.213.0.1")
    assert '"10.213.0.31/24"' in text and "via: 10.213.0.1" in text and "eth0:" in text
    assert "macaddress" not in text.replace("permanent MAC", "")


def _fake_proc(tmp_path: Path, values: dict[str, str]) -> Path:
    for key, value in values.items():
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_text(value + "\n")
    return tmp_path


def test_tunables_are_set_recorded_and_put_back(tmp_path: Path) -> None:
    found = {k: "0" for k in t.TIER_TUNABLES}
    proc = _fake_proc(tmp_path / "proc", found)
    record = tmp_path / "records" / "1.json"
    with t.KubeletTunables(proc, record) as tunables:
        assert {k: (proc / k).read_text().strip() for k in t.TIER_TUNABLES} == t.TIER_TUNABLES
        assert json.loads(record.read_text()) == found
        assert tunables.changed() == {k: v for k, v in t.TIER_TUNABLES.items() if v != "0"}
    assert {k: (proc / k).read_text().strip() for k in t.TIER_TUNABLES} == found
    assert not record.exists()


def test_a_killed_runs_tunables_are_restored_by_the_next(tmp_path: Path, monkeypatch: object) -> None:
    found = {k: "0" for k in t.TIER_TUNABLES}
    proc = _fake_proc(tmp_path / "proc", t.TIER_TUNABLES)  # left as the killed run set them
    records = tmp_path / "records"
    records.mkdir()
    dead_pid = 2 ** 22 + 1  # above pid_max: no such process
    (records / f"{dead_pid}.json").write_text(json.dumps(found))
    (records / "1.json").write_text(json.dumps(found))  # pid 1 lives: its run is not touched
    monkeypatch.setattr(t, "RECORDS", records)  # type: ignore[attr-defined]
    assert t.restore_recorded(proc) == [str(dead_pid)]
    assert {k: (proc / k).read_text().strip() for k in t.TIER_TUNABLES} == found
    assert sorted(p.name for p in records.iterdir()) == ["1.json"]


def test_tier_cgroups_sit_below_this_process_in_every_hierarchy() -> None:
    found = hierarchies()
    assert found, "no cgroup hierarchy found in /proc/self/cgroup"
    tier = TierCgroups("k8snodes-test")
    assert len(tier.dirs) == len(found)
    for h, d in zip(found, tier.dirs, strict=True):
        assert d == h.mount / h.current.lstrip("/") / "k8snodes-test"
        assert d.parent != d.parents[1] or h.current != "/"
    memory = tier.of("memory")
    assert memory is None or memory.name == "k8snodes-test"
