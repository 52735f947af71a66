"""Hostile sizes: every count and list is bounded before anything is expanded.

A worker pool of `count: 100000000` once ended in a MemoryError inside validation. Whatever the
sizes, validation now either accepts the stack (and then it fits the documented limits) or
refuses it with problems that name the offending keys; it never expands an oversized pool.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k8s_ha.model.errors import SpecError
from k8s_ha.model.spec import MAX_NODES, MAX_POOLS, WorkerPool, node_count
from k8s_ha.model.stackfile import read_stack_file
from k8s_ha.placement.plan import plan_stack
from tests.conftest import ROOT

RAW = read_stack_file(ROOT / "Pulumi.dev.yaml")
huge = st.one_of(st.integers(-(10**6), 10**4), st.integers(10**4, 10**40))


def stack_with(pools: list[dict[str, Any]], dns: int = 1) -> dict[str, Any]:
    config = dict(RAW.config)
    config["workerPools"] = pools
    config["network"] = {**config["network"], "dns": ["192.168.122.1"] * dns}
    return config


def pool(i: int, count: int) -> dict[str, Any]:
    return {"name": f"p{i}", "count": count, "firstIp": "192.168.122.41", "vcpu": 2, "memoryMib": 2048, "diskGib": 20}


@pytest.fixture(autouse=True)
def never_expand_large_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    """Expanding a pool beyond the limit is the bug itself: make it fail loudly, not slowly."""
    original = WorkerPool.expanded_nodes

    def guarded(self: WorkerPool) -> Any:
        assert self.count is None or self.count <= MAX_NODES, f"expanded a pool of {self.count} nodes"
        return original(self)

    monkeypatch.setattr(WorkerPool, "expanded_nodes", guarded)


@settings(max_examples=30, deadline=None)
@given(counts=st.lists(huge, min_size=1, max_size=8), pools_factor=st.integers(1, 30), dns=st.integers(0, 50))
def test_any_size_is_accepted_within_limits_or_refused_by_path(counts: list[int], pools_factor: int, dns: int) -> None:
    pools = [pool(i, c) for i, c in enumerate(counts * pools_factor)]
    try:
        plan = plan_stack(stack_with(pools, dns), RAW.secret_keys)
    except SpecError as error:
        paths = {p.path for p in error.problems}
        assert paths, "a refusal names what is wrong"
        assert all(p.startswith(("workerPools", "network", "kubernetes.podCidr")) for p in paths), paths
        return
    assert node_count(plan.spec) <= MAX_NODES and len(plan.placement.nodes) <= MAX_NODES
    assert len(plan.spec.worker_pools) <= MAX_POOLS and 1 <= len(plan.spec.network.dns) <= 3


def test_the_reported_case_is_a_clear_error() -> None:
    with pytest.raises(SpecError) as info:
        plan_stack(stack_with([pool(0, 100_000_000)]), RAW.secret_keys)
    assert [(p.path, p.message) for p in info.value.problems] == [
        ("workerPools[0].count", "100000000 is outside 0..5000")
    ]


def test_the_total_is_bounded_across_pools() -> None:
    with pytest.raises(SpecError) as info:
        plan_stack(stack_with([pool(i, 4000) for i in range(50)]), RAW.secret_keys)
    (problem,) = info.value.problems
    assert problem.path == "workerPools" and "200008 nodes in all: at most 5000" in problem.message


def test_too_many_pools_are_not_walked_one_by_one() -> None:
    with pytest.raises(SpecError) as info:
        plan_stack(stack_with([pool(i, 1) for i in range(MAX_POOLS + 1)]), RAW.secret_keys)
    assert [p.path for p in info.value.problems] == ["workerPools"]
