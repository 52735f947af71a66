"""Property tests: values generated from the documented bounds build and survive the stack file;
one value out of bounds, or one unknown key, is refused at construction with that field's path."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k8s_ha.model.errors import SpecError
from k8s_ha.model.spec import (
    EtcdSpec,
    Failover,
    HaproxyCheck,
    LoadBalancerSpec,
    Model,
    NodeSpec,
    Versions,
    address_problems,
    parse_stack,
)
from k8s_ha.model.stackfile import read_stack_file
from tests.conftest import ROOT

FAST = settings(max_examples=25, deadline=None)
PROD = read_stack_file(ROOT / "Pulumi.prod.yaml")


def stack_dump(model: Model) -> dict[str, Any]:
    """What a stack file would say for `model` (camelCase keys, text values)."""
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


def round_trip(path: tuple[str, ...], model: Model) -> Any:
    """`model` written into the prod stack at `path`, loaded back, and read at the same place."""
    config = copy.deepcopy(PROD.config)
    target = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = stack_dump(model)
    value: Any = parse_stack(config, PROD.secret_keys)
    for key in path:
        value = getattr(value, {"loadBalancer": "load_balancer", "haproxyCheck": "haproxy_check"}.get(key, key))
    return value


@st.composite
def haproxy_checks(draw: st.DrawFn) -> dict[str, int]:
    interval = draw(st.integers(1, 60))
    return {"interval_s": interval, "timeout_s": draw(st.integers(1, interval)),
            "fall": draw(st.integers(1, 10)), "rise": draw(st.integers(1, 10))}


@FAST
@given(haproxy_checks())
def test_valid_haproxy_checks_build_and_round_trip(values: dict[str, int]) -> None:
    check = HaproxyCheck(**values)
    assert round_trip(("loadBalancer", "haproxyCheck"), check) == check


BOUNDS = {"interval_s": ("intervalS", 1, 60), "timeout_s": ("timeoutS", 1, 60),
          "fall": ("fall", 1, 10), "rise": ("rise", 1, 10)}


@FAST
@given(st.sampled_from(sorted(BOUNDS)), st.one_of(st.integers(-10**6, 0), st.integers(61, 10**6)))
def test_one_haproxy_value_out_of_bounds_is_refused_at_its_path(field: str, value: int) -> None:
    alias, low, high = BOUNDS[field]
    if low <= value <= high:
        return
    values = {"interval_s": 60, "timeout_s": 1, field: value}
    with pytest.raises(SpecError) as info:
        HaproxyCheck(**values)  # type: ignore[arg-type]
    assert f"{alias}: {value} is outside {low}..{high}" in [str(p) for p in info.value.problems]


KNOWN = {name for model in (HaproxyCheck, EtcdSpec, Failover, NodeSpec) for name, info in model.model_fields.items()
         for name in (name, info.alias)}


@FAST
@given(st.sampled_from([HaproxyCheck, Failover, Versions]),
       st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(lambda k: k not in KNOWN))
def test_an_unknown_key_is_refused_at_its_path(model: type[Model], key: str) -> None:
    if key in model.model_fields or key in {i.alias for i in model.model_fields.values()}:
        return
    with pytest.raises(SpecError) as info:
        model(**{key: 1})
    assert any(p.path == key and p.message.startswith(f"unknown key {key!r}") for p in info.value.problems)


@st.composite
def etcd_timers(draw: st.DrawFn) -> tuple[int, int]:
    heartbeat = draw(st.integers(10, 10000))
    return heartbeat, draw(st.integers(max(50, 5 * heartbeat), 50000))


def etcd_nodes(count: int) -> list[NodeSpec]:
    return [NodeSpec(name=f"etcd{i}", ip=ipaddress.IPv4Address(f"10.20.0.{21 + i}")) for i in range(count)]


@FAST
@given(etcd_timers(), st.sampled_from([3, 5]), st.booleans())
def test_valid_etcd_settings_build_and_round_trip(timers: tuple[int, int], members: int, pre_vote: bool) -> None:
    heartbeat, election = timers
    spec = EtcdSpec(nodes=etcd_nodes(members), heartbeat_interval_ms=heartbeat, election_timeout_ms=election,
                    pre_vote=pre_vote)
    assert round_trip(("etcd",), spec) == spec


@FAST
@given(st.integers(0, 9).filter(lambda n: n not in (3, 5, 7)))
def test_an_etcd_member_count_without_quorum_is_refused(members: int) -> None:
    with pytest.raises(SpecError) as info:
        EtcdSpec(nodes=etcd_nodes(members))
    assert [p.path for p in info.value.problems] == ["nodes"]


@FAST
@given(st.integers(0, 9), st.integers(0, 99))
def test_etcd_versions_outside_the_window_are_refused(minor: int, patch: int) -> None:
    version = f"3.{minor}.{patch}"
    if minor in (6, 7):
        assert Versions(etcd=version).etcd == version
        return
    with pytest.raises(SpecError, match=rf"etcd: etcd {version} is not supported \(3\.6 or 3\.7\)"):
        Versions(etcd=version)


@st.composite
def failovers(draw: st.DrawFn) -> dict[str, float]:
    retry = draw(st.integers(1, 60))
    renew = draw(st.integers(max(3, retry + 1), 299))
    lease = draw(st.integers(8, 300))
    grace = draw(st.integers(max(8, -(-3 * lease // 4)), 600))  # 3 renewals at lease / 4
    return {"leader_retry_period_s": retry, "leader_renew_deadline_s": renew,
            "leader_lease_s": draw(st.integers(max(5, renew + 1), 300)),
            "node_lease_duration_s": lease, "node_monitor_grace_period_s": grace,
            "node_monitor_period_s": draw(st.integers(1, min(60, grace - 1))),
            "node_eviction_rate": draw(st.floats(0.01, 100)),
            "pod_eviction_timeout_s": draw(st.integers(0, 3600))}


@FAST
@given(failovers())
def test_valid_failover_timers_build(values: dict[str, float]) -> None:
    assert Failover(**values).model_dump() == values


@FAST
@given(failovers())
def test_unordered_leader_timers_are_refused(values: dict[str, float]) -> None:
    values["leader_renew_deadline_s"] = values["leader_lease_s"]  # no longer below the lease
    with pytest.raises(SpecError) as info:
        Failover(**values)
    assert "leaderRenewDeadlineS" in [p.path for p in info.value.problems]


@FAST
@given(failovers())
def test_a_grace_shorter_than_three_node_lease_renewals_is_refused(values: dict[str, float]) -> None:
    values["node_lease_duration_s"] = 4 * values["node_monitor_grace_period_s"]  # one renewal per grace
    if values["node_lease_duration_s"] > 300:
        return
    with pytest.raises(SpecError) as info:
        Failover(**values)
    assert "nodeMonitorGracePeriodS" in [p.path for p in info.value.problems]


hosts = st.integers(2, 253).map(lambda i: ipaddress.IPv4Address(f"10.20.0.{i}"))


@FAST
@given(st.lists(hosts, min_size=3, max_size=3, unique=True))
def test_a_front_door_pair_is_accepted_unless_it_reuses_the_vip(addresses: list[ipaddress.IPv4Address]) -> None:
    net = ipaddress.IPv4Network("10.20.0.0/24")
    vip, first, second = addresses
    assert address_problems(net, vip, [("pair[0]", first), ("pair[1]", second)], vip_path="vip") == []
    clash = address_problems(net, vip, [("pair[0]", first), ("pair[1]", vip)], vip_path="vip")
    assert [str(p) for p in clash] == [f"pair[1]: {vip} is already used by vip"]


@FAST
@given(st.lists(hosts, min_size=2, max_size=2, unique=True), st.sampled_from(["lb1", "x", "a-b-c"]))
def test_load_balancer_node_lists_build_and_refuse_bad_names(ips: list[ipaddress.IPv4Address], name: str) -> None:
    nodes = [NodeSpec(name=f"{name}{i}", ip=ip) for i, ip in enumerate(ips)]
    assert LoadBalancerSpec(nodes=nodes).nodes == nodes
    with pytest.raises(SpecError) as info:
        LoadBalancerSpec(nodes=[{"name": name.upper() + "_", "ip": str(ips[0])}, nodes[1]])  # type: ignore[list-item]
    assert [p.path for p in info.value.problems] == ["nodes[0].name"]
