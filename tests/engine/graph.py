"""The resource graph as the real engine planned it, in the shape the unit harness records.

A preview saved with `--save-plan` holds, per resource URN, the goal the program registered: type,
parent, provider, dependencies and the inputs, with every secret encrypted by the stack's secrets
manager. Reading it back gives the engine's own view to hold against the mock monitor's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k8s_ha.cli.engine import own_type
from tests.unit.harness import SECRET_SIG, SIG_KEY, Graph


def logical(urn: str) -> str:
    """A URN as `type::name`: without stack and project, so two stacks' graphs compare, and without
    the parents' types (the real engine qualifies a child's type with its whole parent chain, the SDK's
    mock monitor with the immediate parent's only; parents are compared as a field of their own)."""
    if not urn.startswith("urn:pulumi:"):
        return urn
    typ = own_type(urn)
    return typ if typ == "pulumi:pulumi:Stack" else f"{typ}::{urn.rsplit('::', 1)[1]}"  # a stack's name is the stack's


def engine_only(key: str) -> bool:
    """A `logical` key of what the engine adds itself: the stack, and default providers (the program
    sets explicit ones)."""
    return key == "pulumi:pulumi:Stack" or "::default" in key


@dataclass(frozen=True)
class Node:
    type: str
    parent: str
    provider: str
    dependencies: frozenset[str]
    secret_inputs: frozenset[str]
    additional_secret_outputs: frozenset[str]


def _is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def _secret_keys(inputs: dict[str, Any]) -> frozenset[str]:
    """Top-level input names whose value is, or contains, a secret."""

    def contains(value: Any) -> bool:
        if _is_secret(value):
            return True
        if isinstance(value, dict):
            return any(contains(v) for v in value.values())
        if isinstance(value, list):
            return any(contains(v) for v in value)
        return False

    return frozenset(k for k, v in inputs.items() if contains(v))


def provider_of(reference: str) -> str:
    """A provider reference is `URN::ID`; keep the URN part, logically. A default provider (the engine
    makes one per package and version for resources the program gives none) reads as none, as under mocks."""
    if not reference:
        return ""
    urn = logical(reference.rsplit("::", 1)[0])
    return "" if urn.split("::")[-1].startswith("default") else urn


def remote_components(path: Path) -> set[str]:
    """Components a provider constructs (kubernetes' `yaml/v2` ConfigFile/ConfigGroup): the provider
    registers them inside its Construct call, so the plan's goal for them records neither the provider
    nor the `dependsOn` the program passed (the provider applies those to the children it makes)."""
    plan = json.loads(path.read_text())
    return {logical(urn) for urn, rp in plan["resourcePlans"].items()
            if (goal := rp.get("goal")) and not goal.get("custom") and not goal["type"].startswith(
                ("k8s-ha:", "pulumi:"))}


def from_plan(path: Path) -> dict[str, Node]:
    plan = json.loads(path.read_text())
    nodes = {}
    for urn, resource_plan in plan["resourcePlans"].items():
        goal = resource_plan.get("goal")
        if goal is None:
            continue
        inputs = (goal.get("inputDiff") or {}).get("adds") or {}
        nodes[logical(urn)] = Node(
            type=goal["type"], parent=logical(goal.get("parent", "")), provider=provider_of(goal.get("provider", "")),
            dependencies=frozenset(logical(u) for u in goal.get("dependencies") or []),
            secret_inputs=_secret_keys(inputs),
            additional_secret_outputs=frozenset(goal.get("additionalSecretOutputs") or []))
    return nodes


def from_harness(graph: Graph) -> dict[str, Node]:
    return {logical(r.urn): Node(type=r.type, parent=logical(r.parent), provider=provider_of(r.provider),
                                 dependencies=frozenset(logical(u) for u in r.dependencies),
                                 secret_inputs=frozenset(r.secret_inputs),
                                 additional_secret_outputs=frozenset(r.additional_secret_outputs))
            for r in graph.resources.values()}
