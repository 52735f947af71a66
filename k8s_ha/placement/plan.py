"""A stack's plan: the validated spec and its placement, computed once per run and handed on.

`parse_stack` (model layer) checks everything the configuration says on its own; placing the nodes
is this layer's job, and a placement in which one failure domain's loss is fatal (possible only
through pins, with 3 or more domains) is reported the same way, as a SpecError with a config path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k8s_ha.model.errors import Problem, SpecError
from k8s_ha.model.spec import StackSpec, parse_stack
from k8s_ha.model.stackfile import read_stack_file
from k8s_ha.placement.place import Placement, place


@dataclass(frozen=True)
class Plan:
    spec: StackSpec
    placement: Placement

    @property
    def warnings(self) -> list[str]:
        staged = [] if self.spec.kubernetes.bootstrap else [
            "kubernetes.bootstrap is false: machines, load balancers, etcd and Harbor only; no kubeadm, "
            "add-ons or kubeconfig until it is set to true"]
        cgroup_v1 = [
            "kubernetes.allowCgroupV1 is true: the kubelet runs on cgroup v1, which Kubernetes deprecates "
            "(kubeadm's SystemVerification preflight is skipped); move the nodes to cgroup v2 hosts when you can"
        ] if self.spec.kubernetes.bootstrap and self.spec.kubernetes.allow_cgroup_v1 else []
        return [*self.placement.warnings, *staged, *cgroup_v1]


def plan_stack(config: dict[str, Any], secret_keys: frozenset[str] = frozenset(),
               problems: tuple[Problem, ...] = ()) -> Plan:
    """Validate a stack's `k8s-ha:` config and place its nodes; SpecError lists every problem
    (`problems`: those found while reading the stack file, reported with the rest)."""
    try:
        spec = parse_stack(config, secret_keys, problems)
    except SpecError as error:
        raise SpecError(error.problems + placement_of_refused(error), error.partial) from None
    placement = place(spec)
    unsafe = placement_problems(placement)
    if unsafe:
        raise SpecError(unsafe)
    return Plan(spec, placement)


def load_plan(path: Path) -> Plan:
    """The plan of a Pulumi.<stack>.yaml file (secure values stay opaque placeholders)."""
    raw = read_stack_file(path)
    return plan_stack(raw.config, raw.secret_keys, raw.problems)


# The sections placement reads; while one of them has a problem, placement is not run at all.
PLACEMENT_INPUTS = frozenset({"cluster", "hypervisors", "loadBalancer", "etcd", "controlPlane", "workerPools",
                              "harbor"})


def placement_of_refused(error: SpecError) -> list[Problem]:
    """Placement's problems for a stack refused elsewhere (its versions, its Kubernetes settings):
    placement reads only the node, hypervisor and cluster sections, so when those are clean its
    verdict is reported in the same run as everything else."""
    spec = error.partial
    if not isinstance(spec, StackSpec) or any(_section(p.path) in PLACEMENT_INPUTS for p in error.problems):
        return []
    return placement_problems(place(spec))


def _section(path: str) -> str:
    return path.split(".", 1)[0].split("[", 1)[0]


def placement_problems(placement: Placement) -> list[Problem]:
    """With 3 or more failure domains, any single loss that is fatal is a configuration error."""
    if len(placement.domains) < 3:
        return []
    problems = []
    for loss in placement.fatal_losses:
        pinned = [n.path for n in placement.nodes if n.failure_domain == loss.domain]
        problems.append(
            Problem(
                "placement",
                f"losing {loss.domain} would take the cluster down ({'; '.join(loss.reasons)}); "
                f"move some of these nodes elsewhere (check pins): {', '.join(pinned)}",
            )
        )
    return problems
