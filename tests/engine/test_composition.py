"""The library's composition (docs/library.md, "Several of each in one stack") through the real engine.

Two load-balancer pairs, two etcd clusters, two control planes with a worker pool each and two
Harbors in one inline program, previewed by the real CLI and plugins: the engine refuses a duplicate
URN, an unknown resource type or an input its provider rejects, which the mock monitor cannot. The
URNs the engine plans must be exactly those the mock monitor records for the same program.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import PASSPHRASE
from tests.unit.test_components_composition import composed, two_of_each

pytestmark = pytest.mark.engine

COMPONENTS = ("k8s-ha:loadbalancer:HaproxyKeepalivedPair", "k8s-ha:etcd:ExternalEtcd",
              "k8s-ha:kubernetes:ControlPlane", "k8s-ha:kubernetes:WorkerPool", "k8s-ha:harbor:HarborRegistry")


def _engine_only(urn: str) -> bool:
    """What the engine adds itself: the stack, and default providers (the components set explicit ones)."""
    return "::pulumi:pulumi:Stack::" in urn or "::default" in urn


def _rooted(urn: str) -> str:
    """A URN as the engine spells it: the mock monitor puts the stack's type before a top-level
    resource's (`Stack$k8s-ha:etcd:ExternalEtcd`), the engine leaves the root out."""
    return urn.replace("::pulumi:pulumi:Stack$", "::")


def preview_inline(directory: Path) -> tuple[list[str], dict[str, int]]:
    """A real preview of `two_of_each` as an inline program with a file backend under `directory`
    (project and stack named as under mocks, so that the URNs compare):
    the URNs of every planned step and the engine's summary of operations."""
    from pulumi import automation as auto

    from k8s_ha.cli.project import cli_path

    pulumi_cli = cli_path()
    assert pulumi_cli is not None  # engine_ready checked it
    (directory / "state").mkdir(parents=True)
    workspace = auto.LocalWorkspaceOptions(
        work_dir=str(directory),
        project_settings=auto.ProjectSettings(name="composition", runtime="python",
                                              backend=auto.ProjectBackend(url=(directory / "state").as_uri())),
        env_vars={"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE, "PULUMI_SKIP_UPDATE_CHECK": "true"},
        pulumi_command=None if shutil.which("pulumi") else
        auto.PulumiCommand(root=str(Path(pulumi_cli).parent.parent), skip_version_check=True))
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
    planned = [u for u in urns if not _engine_only(u)]
    assert len(planned) == len(set(planned)), "the engine planned one URN twice"
    for component in COMPONENTS:
        assert sum(f"::{component}::" in u for u in planned) == 2, component
    mock = {_rooted(u) for u in composed().urns if not _engine_only(u)}
    assert set(planned) == mock, (sorted(set(planned) - mock), sorted(mock - set(planned)))
    assert summary.get("create") == len(planned) + 1, summary  # + the stack itself
