"""Shared fixtures: the example stacks, their placements, and real generated material."""

from __future__ import annotations

from pathlib import Path

import pytest

from k8s_ha.model.spec import StackSpec
from k8s_ha.placement.place import Placement
from k8s_ha.placement.plan import load_plan

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_STACKS = sorted(p.name for p in ROOT.glob("Pulumi.*.yaml") if p.name != "Pulumi.yaml")


def load_example(name: str) -> tuple[StackSpec, Placement]:
    plan = load_plan(ROOT / name)
    return plan.spec, plan.placement


@pytest.fixture(params=EXAMPLE_STACKS)
def example(request: pytest.FixtureRequest) -> tuple[StackSpec, Placement]:
    """Each example stack file in turn, parsed and placed."""
    return load_example(request.param)


@pytest.fixture(scope="session")
def prod_material() -> dict[str, str]:
    from tests.support.material import generate

    spec, placement = load_example("Pulumi.prod.yaml")
    return generate(spec, placement)
