"""A machine serves one component of a kind: a second component of that kind on it is refused
with both components, the machine and the rule named, before it registers anything (the engine
would otherwise stop on a duplicate URN for `<machine>-<step>`, after the first resources exist).
The record is per program run, so separate programs (and these tests) never see each other's."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from k8s_ha.resources.control_plane import ControlPlane
from k8s_ha.resources.etcd import ExternalEtcd
from k8s_ha.resources.harbor import HarborRegistry
from k8s_ha.resources.loadbalancer import HaproxyKeepalivedPair
from k8s_ha.resources.workers import WorkerPool
from tests.unit.harness import Graph
from tests.unit.test_components_composition import (
    COMMAND,
    control_plane_args,
    etcd_args,
    harbor_args,
    pair_args,
    pool_args,
    run_under_mocks,
)


def refused_second(first: Callable[[], object], second: Callable[[], object], message: str) -> Graph:
    """Run `first`, then `second`, which must raise `message` exactly; the recorded graph."""
    def program() -> None:
        first()
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            second()

    return run_under_mocks(program).graph


def rule(machine: str) -> str:
    return (f"a machine serves one component of a kind (both would write the same files on it and name their "
            f"steps '{machine}-...'): give each component its own machines")


def nothing_of(graph: Graph, name: str) -> bool:
    """Neither the component `name` nor any child of it was registered."""
    urns = {r.urn for r in graph.resources.values() if r.name == name}
    return not urns and not any(r.parent in urns for r in graph.resources.values())


# (component class, the blue component's args, its name and the green one's, the machine both
# claim, what it is to the first): the same kind twice on the blue machines.
SAME_KIND_TWICE = [
    (ExternalEtcd, lambda: etcd_args("blue", 31), "blue-etcd", "green-etcd", "blue-etcd-0", "an etcd member"),
    (HaproxyKeepalivedPair, lambda: pair_args("blue", 31), "blue-front", "green-front", "blue-lb-0",
     "a load balancer"),
    (HarborRegistry, lambda: harbor_args("blue", 31), "blue-harbor", "green-harbor", "blue-harbor", "a Harbor host"),
    (ControlPlane, lambda: control_plane_args("blue", 31, workers=[]), "blue-cp", "green-cp", "blue-m-0",
     "a Kubernetes node"),
]


@pytest.mark.parametrize(("component", "args", "first", "second", "machine", "role"), SAME_KIND_TWICE,
                         ids=[case[0].__name__ for case in SAME_KIND_TWICE])
def test_the_same_kind_twice_on_one_machine(component: type[Any], args: Callable[[], object], first: str,
                                            second: str, machine: str, role: str) -> None:
    kind = component.__name__
    graph = refused_second(
        lambda: component(first, args()), lambda: component(second, args()),
        f"{kind} {second!r}: machine {machine!r} is already {role} of {kind} {first!r}; {rule(machine)}")
    assert nothing_of(graph, second)


def test_the_first_etcd_cluster_keeps_its_members_when_a_second_is_refused() -> None:
    graph = refused_second(
        lambda: ExternalEtcd("blue-etcd", etcd_args("blue", 31)),
        lambda: ExternalEtcd("green-etcd", etcd_args("blue", 31)),
        f"ExternalEtcd 'green-etcd': machine 'blue-etcd-0' is already an etcd member of ExternalEtcd 'blue-etcd'; "
        f"{rule('blue-etcd-0')}")
    assert len([s for s in graph.of_type(COMMAND) if s.name.endswith("-etcd-member")]) == 3


def test_two_worker_pools_on_one_machine() -> None:
    pools: list[ControlPlane] = []

    def first() -> None:
        pools.append(ControlPlane("cp", control_plane_args("cp", 53, workers=["cp-w-0", "cp-w-1"])))
        WorkerPool("pool-a", pool_args("cp", 53, pools[0], ["cp-w-0", "cp-w-1"]))

    graph = refused_second(
        first, lambda: WorkerPool("pool-b", pool_args("cp", 53, pools[0], ["cp-w-0"])),
        f"WorkerPool 'pool-b': machine 'cp-w-0' is already a Kubernetes node of WorkerPool 'pool-a'; "
        f"{rule('cp-w-0')}")
    assert nothing_of(graph, "pool-b")


def test_a_master_of_one_control_plane_is_no_worker_of_another() -> None:
    planes: list[ControlPlane] = []

    def first() -> None:
        ControlPlane("cp", control_plane_args("cp", 54, workers=[]))
        planes.append(ControlPlane("cq", control_plane_args("cq", 55, workers=["cp-m-0"])))

    graph = refused_second(
        first, lambda: WorkerPool("cq-pool", pool_args("cq", 55, planes[0], ["cp-m-0"])),
        f"WorkerPool 'cq-pool': machine 'cp-m-0' is already a Kubernetes node of ControlPlane 'cp'; {rule('cp-m-0')}")
    assert nothing_of(graph, "cq-pool")


def test_machines_may_serve_components_of_different_kinds() -> None:
    def program() -> None:
        args = etcd_args("mixed", 56)
        ExternalEtcd("mixed-etcd", args)
        HaproxyKeepalivedPair("mixed-front", pair_args("mixed", 56, (args.hosts[0], args.hosts[1])))

    steps = {s.name for s in run_under_mocks(program).graph.of_type(COMMAND)}
    assert {"mixed-etcd-0-etcd-member", "mixed-etcd-0-loadbalancer"} <= steps


def test_each_program_run_starts_with_no_machine_claimed() -> None:
    """The same component on the same machines in two programs (as tests and automation-API runs
    build them): each run has its own record."""
    for _ in range(2):
        graph = run_under_mocks(lambda: ExternalEtcd("blue-etcd", etcd_args("blue", 31))).graph
        assert len(graph.of_type("k8s-ha:etcd:ExternalEtcd")) == 1
