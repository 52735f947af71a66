"""Real previews of every example stack: the engine sees what the mock monitor sees.

Each stack's hypervisors are pointed at libvirt's test driver (a private daemon); everything else
in the stack is unchanged. The real engine's saved plan must hold the same resources, parents,
providers, dependency edges and secret inputs as the unit harness records under mocks, and every
secret must reach the plan encrypted.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from k8s_ha.cli.engine import run
from tests.conftest import EXAMPLE_STACKS
from tests.engine.conftest import Project, make_project, on_hypervisor, stack_config
from tests.engine.graph import Node, engine_only, from_harness, from_plan, remote_components
from tests.engine.testdriver import TestDriverDaemon
from tests.unit.harness import SECRET_SIG, SIG_KEY, run_program

pytestmark = pytest.mark.engine


def preview(project: Project, plan: Path) -> dict[str, int]:
    """Run a real preview saving its plan; the engine's summary of operations."""
    out = io.StringIO()
    result = run("preview", project.stack, project_dir=project.directory, out=out, extra_env=project.env,
                 plan_file=plan)
    assert result.exit_code == 0 and result.printer is not None, out.getvalue()
    return result.printer.changes


def _secret_values(value: Any) -> list[Any]:
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return [value]
        return [s for v in value.values() for s in _secret_values(v)]
    if isinstance(value, list):
        return [s for v in value for s in _secret_values(v)]
    return []


@pytest.mark.parametrize("stack_file", EXAMPLE_STACKS)
def test_real_preview_matches_the_mock_graph(stack_file: str, engine_ready: None, test_driver: TestDriverDaemon,
                                             tmp_path: Path) -> None:
    stack = stack_file.removeprefix("Pulumi.").removesuffix(".yaml")
    config = on_hypervisor(stack_config(stack_file), test_driver.uri)
    project = make_project(tmp_path / "project", stack, config)
    plan_file = tmp_path / "plan.json"
    summary = preview(project, plan_file)

    engine = {urn: node for urn, node in from_plan(plan_file).items() if not engine_only(urn)}
    mocked = {urn: node for urn, node in from_harness(run_program(config, preview=True)).items()
              if not engine_only(urn)}

    assert sorted(engine) == sorted(mocked), "resource sets differ"
    for urn in remote_components(plan_file):  # compared by type and parent only (see remote_components)
        engine[urn] = replace(engine[urn], provider="", dependencies=frozenset())
        mocked[urn] = replace(mocked[urn], provider="", dependencies=frozenset())
    differences = {urn: (engine[urn], mocked[urn]) for urn in engine if engine[urn] != mocked[urn]}
    assert not differences, _explain(differences)
    planned = json.loads(plan_file.read_text())["resourcePlans"]
    # A fresh stack: every planned resource is a create (the engine's summary leaves providers out).
    assert summary == {"create": sum(1 for urn in planned if "::pulumi:providers:" not in urn)}, summary

    # Every secret input reached the engine as a secret: encrypted in the plan, never in clear.
    plan = json.loads(plan_file.read_text())
    secrets = [s for rp in plan["resourcePlans"].values()
               for s in _secret_values(((rp.get("goal") or {}).get("inputDiff") or {}).get("adds") or {})]
    assert secrets, "the program registers secret inputs; the plan must show them"
    assert all(set(s) == {SIG_KEY, "ciphertext"} for s in secrets), "a secret was saved without encryption"
    assert sum(len(n.secret_inputs) for n in engine.values()) >= 1


def _explain(differences: dict[str, tuple[Node, Node]]) -> str:
    lines = []
    for urn, (engine, mocked) in sorted(differences.items())[:10]:
        for field in ("type", "parent", "provider", "dependencies", "secret_inputs", "additional_secret_outputs"):
            if getattr(engine, field) != getattr(mocked, field):
                lines.append(f"{urn}: {field}: engine {getattr(engine, field)} != mocks {getattr(mocked, field)}")
    return "\n".join(lines)
