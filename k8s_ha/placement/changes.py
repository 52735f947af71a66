"""Changes a stack cannot make to what it last deployed, judged from that deployment's outputs
(`kubernetesVersion`, `nodes`) before the engine runs: a version change kubeadm cannot make, and a
control-plane change that would take the cluster's init node or most of its masters away at once.
The nodes refuse the first kind themselves too; the second only shows here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from k8s_ha.model import versions
from k8s_ha.model.spec import Role, StackSpec, quorum
from k8s_ha.placement.place import Placement


def deployed_change_problems(outputs: Mapping[str, Any], spec: StackSpec, placement: Placement) -> list[str]:
    """Each problem as "path: reason"; none when the stack was never deployed."""
    problems = []
    running = outputs.get("kubernetesVersion")
    if isinstance(running, str) and (problem := versions.upgrade_problem(running, spec.versions.kubernetes)):
        problems.append(f"versions.kubernetes: {problem}")
    nodes = outputs.get("nodes")
    if spec.kubernetes.bootstrap and isinstance(nodes, list):
        before = [n["name"] for n in nodes if isinstance(n, dict) and n.get("role") == Role.CONTROL_PLANE.value]
        after = [n.name for n in placement.by_role(Role.CONTROL_PLANE)]
        if before and after[:1] != before[:1]:
            problems.append(
                f"controlPlane.nodes: the first master is {before[0]}, which ran `kubeadm init` and holds the "
                f"workers' memberships; keep it first (now {after[0]}). Replace the other masters, not the first")
        kept = [n for n in before if n in after]
        if before and len(kept) < quorum(len(before)):
            gone = sorted(set(before) - set(kept))
            problems.append(
                f"controlPlane.nodes: {', '.join(gone)} would leave at once, {len(kept)} of the {len(before)} "
                f"running masters stay; keep at least {quorum(len(before))} and replace the others over "
                "several `up`s")
    return problems
