"""Placement spreads each role and the fault analysis tells the truth about single losses."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k8s_ha.model.errors import SpecError
from k8s_ha.model.spec import Role, StackSpec, parse_stack, quorum
from k8s_ha.model.stackfile import read_stack_file
from k8s_ha.placement.place import place, stable_mac
from k8s_ha.placement.plan import plan_stack

ROOT = Path(__file__).resolve().parents[2]


def prod() -> dict[str, Any]:
    return copy.deepcopy(read_stack_file(ROOT / "Pulumi.prod.yaml").config)


def stack(hypervisors: int, etcd: int, masters: int = 3, workers: int = 4) -> dict[str, Any]:
    config = prod()
    config["hypervisors"] = [
        {"name": f"hv{i}", "uri": f"qemu+ssh://root@10.9.0.{i}/system"} for i in range(1, hypervisors + 1)
    ]
    config["etcd"]["nodes"] = [{"name": f"etcd{i}", "ip": f"10.20.0.{20 + i}"} for i in range(1, etcd + 1)]
    config["controlPlane"]["nodes"] = [{"name": f"cp{i}", "ip": f"10.20.0.{30 + i}"} for i in range(1, masters + 1)]
    config["workerPools"] = [{"name": "w", "count": workers, "firstIp": "10.20.0.101"}]
    return config


def test_prod_spreads_every_role_over_three_hypervisors() -> None:
    placement = place(parse_stack(prod()))
    for role in (Role.ETCD, Role.CONTROL_PLANE, Role.WORKER):
        per_hv = Counter(n.hypervisor for n in placement.by_role(role))
        assert len(per_hv) == 3 and max(per_hv.values()) - min(per_hv.values()) <= 1
    assert len({n.hypervisor for n in placement.by_role(Role.LOAD_BALANCER)}) == 2
    assert not placement.warnings and not placement.fatal_losses


def test_pins_are_respected() -> None:
    config = prod()
    config["controlPlane"]["nodes"][0]["hypervisor"] = "hv3"
    config["controlPlane"]["nodes"][1]["hypervisor"] = "hv3"
    placement = place(parse_stack(config))
    assert placement.node("cp1").hypervisor == "hv3" and placement.node("cp2").hypervisor == "hv3"
    assert placement.node("cp3").hypervisor in ("hv1", "hv2")


def test_pins_that_break_quorum_are_an_error_with_three_hypervisors() -> None:
    config = prod()
    for node in config["etcd"]["nodes"][:3]:
        node["hypervisor"] = "hv1"
    with pytest.raises(SpecError) as info:
        plan_stack(config)
    (problem,) = info.value.problems
    assert problem.path == "placement"
    assert "losing hv1 would take the cluster down (etcd keeps 2 of 5 members, quorum needs 3)" in problem.message
    assert "etcd.nodes[0]" in problem.message


def test_placement_is_reported_with_the_problems_of_sections_it_does_not_read() -> None:
    config = prod()
    for node in config["etcd"]["nodes"][:3]:
        node["hypervisor"] = "hv1"
    config["versions"] = {"kubernetes": "1.20.0"}
    config["kubernetes"] = {"podCidr": "10.244.0.0/33"}
    with pytest.raises(SpecError) as info:
        plan_stack(config)
    paths = [p.path for p in info.value.problems]
    assert paths[-1] == "placement" and "versions.kubernetes" in paths and "kubernetes.podCidr" in paths
    assert "losing hv1 would take the cluster down" in info.value.problems[-1].message
    # A problem in a section placement reads: placement waits for it (it would judge wrong input).
    config["etcd"]["nodes"][3]["ip"] = "not an address"
    with pytest.raises(SpecError) as info:
        plan_stack(config)
    assert "placement" not in [p.path for p in info.value.problems]


def test_pins_that_put_both_load_balancers_together_are_an_error() -> None:
    config = prod()
    for node in config["loadBalancer"]["nodes"]:
        node["hypervisor"] = "hv2"
    with pytest.raises(SpecError, match="both load balancers are lost"):
        plan_stack(config)


def test_two_hypervisors_warn_about_the_exact_fatal_loss() -> None:
    """5 etcd members on 2 hosts die with the host holding 3 of them."""
    placement = place(parse_stack(stack(hypervisors=2, etcd=5)))
    assert placement.warnings[0].startswith("ONLY 2 FAILURE DOMAINS")
    (fatal,) = placement.fatal_losses
    assert fatal.domain == "hv1"
    assert any("losing hv1 takes the cluster down: etcd keeps 2 of 5 members, quorum needs 3" in w
               for w in placement.warnings)


def test_one_hypervisor_is_plainly_not_ha() -> None:
    placement = place(parse_stack(read_stack_file(ROOT / "Pulumi.dev.yaml").config))
    assert placement.warnings[0].startswith("NOT HIGHLY AVAILABLE")
    assert placement.losses[0].verdict == "down"


def test_existing_hosts_are_their_own_failure_domains() -> None:
    placement = place(parse_stack(read_stack_file(ROOT / "Pulumi.staging.yaml").config))
    metal = placement.by_role(Role.WORKER)
    assert {n.failure_domain for n in metal} == {"host:rack1", "host:rack2", "host:rack3"}
    assert all(n.hypervisor is None and not n.is_vm for n in metal)
    rack1 = next(loss for loss in placement.losses if loss.domain == "host:rack1")
    assert rack1.verdict == "degraded" and rack1.worker_capacity == pytest.approx(2 / 3)


def test_worker_pool_restricted_to_hypervisors() -> None:
    config = prod()
    config["workerPools"][0]["hypervisors"] = ["hv1", "hv2"]
    placement = place(parse_stack(config))
    assert {n.hypervisor for n in placement.by_role(Role.WORKER)} == {"hv1", "hv2"}


def test_macs_are_stable_local_and_unique() -> None:
    placement = place(parse_stack(prod()))
    macs = [n.mac for n in placement.nodes]
    assert len(set(macs)) == len(macs)
    assert all(mac.startswith("52:54:00:") for mac in macs)
    assert stable_mac("prod", "cp1") == placement.node("cp1").mac


def test_placement_is_deterministic() -> None:
    spec = parse_stack(prod())
    assert place(spec) == place(spec)


def spec_for(hypervisors: int, etcd: int, masters: int, workers: int) -> StackSpec:
    return parse_stack(stack(hypervisors, etcd, masters, workers))


@settings(max_examples=60, deadline=None)
@given(
    hypervisors=st.integers(min_value=3, max_value=9),
    etcd=st.sampled_from([3, 5, 7]),
    masters=st.integers(min_value=2, max_value=7),
    workers=st.integers(min_value=0, max_value=40),
)
def test_default_spreading_survives_any_single_loss(hypervisors: int, etcd: int, masters: int, workers: int) -> None:
    placement = place(spec_for(hypervisors, etcd, masters, workers))
    for loss in placement.losses:
        assert loss.verdict != "down", loss
        assert loss.etcd_alive >= quorum(etcd)
    for role in (Role.ETCD, Role.CONTROL_PLANE, Role.WORKER):
        counts = Counter(n.hypervisor for n in placement.by_role(role))
        if counts:
            assert max(counts.values()) - min(counts.get(f"hv{i}", 0) for i in range(1, hypervisors + 1)) <= 1


@settings(max_examples=40, deadline=None)
@given(etcd=st.sampled_from([3, 5, 7]), workers=st.integers(min_value=1, max_value=20))
def test_fewer_than_three_hypervisors_always_warn(etcd: int, workers: int) -> None:
    placement = place(spec_for(2, etcd, 3, workers))
    assert placement.warnings and placement.fatal_losses  # some single loss is always fatal


@settings(max_examples=40, deadline=None)
@given(hypervisors=st.integers(min_value=1, max_value=6), workers=st.integers(min_value=0, max_value=30))
def test_worker_capacity_share_is_consistent(hypervisors: int, workers: int) -> None:
    placement = place(parse_stack(stack(hypervisors, 3, 3, workers)) if hypervisors >= 3
                      else spec_for(hypervisors, 3, 3, workers))
    total = sum(n.size.vcpu for n in placement.by_role(Role.WORKER))
    for loss in placement.losses:
        lost = sum(n.size.vcpu for n in placement.by_role(Role.WORKER) if n.failure_domain == loss.domain)
        expected = (total - lost) / total if total else 1.0
        assert loss.worker_capacity == pytest.approx(expected)
