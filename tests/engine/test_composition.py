"""The library's composition (docs/library.md, "Several of each in one stack") through the real engine.

Two load-balancer pairs, two etcd clusters, two control planes with a worker pool each and two
Harbors in one inline program, previewed by the real CLI and plugins: the engine refuses a duplicate
URN, an unknown resource type or an input its provider rejects, which the mock monitor cannot. The
URNs the engine plans must be exactly those the mock monitor records for the same program.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import PASSPHRASE
from tests.engine.graph import engine_only, logical
from tests.unit.test_components_composition import composed, two_of_each

pytestmark = pytest.mark.engine

COMPONENTS = ("k8s-ha:loadbalancer:HaproxyKeepalivedPair", "k8s-ha:etcd:ExternalEtcd",
              "k8s-ha:kubernetes:ControlPlane", "k8s-ha:kubernetes:WorkerPool", "k8s-ha:harbor:HarborRegistry")


def preview_inline(directory: Path) -> tuple[list[str], dict[str, int]]:
    """A real preview of `two_of_each` as an inline program with a file backend under `directory`:
    the URNs of every planned step and the engine's summary of operations."""
    from pulumi import automation as auto

    from k8s_ha.cli.engine import pulumi_command
    from k8s_ha.cli.project import cli_path

    pulumi_cli = cli_path()
    assert pulumi_cli is not None  # engine_ready checked it
    (directory / "state").mkdir(parents=True)
    workspace = auto.LocalWorkspaceOptions(
        work_dir=str(directory),
        project_settings=auto.ProjectSettings(name="composition", runtime="python",
                                              backend=auto.ProjectBackend(url=(directory / "state").as_uri())),
        env_vars={"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE, "PULUMI_SKIP_UPDATE_CHECK": "true"},
        pulumi_command=pulumi_command(pulumi_cli))
    stack = auto.create_stack(stack_name="test", project_name="composition", program=two_of_each,
                              opts=workspace)
    urns: list[str] = []

    def events(event: Any) -> None:
        if event.resource_pre_event is not None:
            urns.append(event.resource_pre_event.metadata.urn)

    result = stack.preview(on_event=events)
    return urns, dict(result.change_summary)


def test_two_of_each_component_previews_with_the_real_engine(engine_ready: None, tmp_path: Path) -> None:
    urns, summary = preview_inline(tmp_path / "project")
    planned = [u for u in urns if not engine_only(logical(u))]
    assert len(planned) == len(set(planned)), "the engine planned one URN twice"
    for component in COMPONENTS:
        assert sum(f"::{component}::" in u for u in planned) == 2, component
    engine = {logical(u) for u in planned}
    mock = {key for key in map(logical, composed().urns) if not engine_only(key)}
    assert engine == mock, (sorted(engine - mock), sorted(mock - engine))
    assert summary.get("create") == len(planned) + 1, summary  # + the stack itself
