"""Engine tier: the real Pulumi CLI and provider plugins, driven through `k8s_ha.cli.engine`.

Needs the `pulumi` CLI (PATH or scripts/engine's cache) and every provider plugin the program
imports. A missing plugin skips the tests that need it with the plugin names printed (pytest -ra);
a missing CLI skips likewise. Nothing is faked: either the real engine runs or the test is skipped.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.engine.testdriver import TestDriverDaemon
from tests.tools import require_root, require_tool

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "engine-tier"


@cache
def missing_engine() -> str | None:
    from k8s_ha.cli.engine import cli_path
    from k8s_ha.cli.plugins import missing_plugins

    missing = missing_plugins()
    if missing:  # named first: without them scripts/test does not build the CLI either
        names = ", ".join(f"{p.name} v{p.version}" for p in missing)
        return f"provider plugin(s) not installed: {names} (docs/engine.md)"
    if cli_path() is None:
        return "no pulumi CLI on PATH or in .cache/engine (scripts/engine builds it)"
    return None


@pytest.fixture(scope="session")
def engine_ready() -> None:
    """Skip, naming what is missing, unless the CLI and every plugin the program needs are here."""
    reason = missing_engine()
    if reason:
        print(f"\nengine tier: SKIPPING: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def test_driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestDriverDaemon]:
    require_root("libvirtd for the test driver runs in its own mount namespace")
    require_tool("libvirtd", "pulumi-libvirt reaches even test:///default through a daemon socket")
    require_tool("virsh")
    with TestDriverDaemon(tmp_path_factory.mktemp("libvirtd")) as daemon:
        yield daemon


@dataclass
class Project:
    """A copy of the project with one stack file, its own file backend and passphrase."""

    directory: Path
    stack: str
    config: dict[str, Any]

    @property
    def env(self) -> dict[str, str]:
        return {"PULUMI_BACKEND_URL": (self.directory / "state").as_uri(),
                "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE}

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    def write(self) -> None:
        """The stack file from `config`; the salt the engine wrote for the stack's secrets is kept."""
        path = self.directory / f"Pulumi.{self.stack}.yaml"
        old = yaml.safe_load(path.read_text()) if path.exists() else None
        document: dict[str, Any] = {"config": {f"k8s-ha:{k}": v for k, v in self.config.items()}}
        if isinstance(old, dict) and "encryptionsalt" in old:
            document = {"encryptionsalt": old["encryptionsalt"], **document}
        path.write_text(yaml.safe_dump(document, sort_keys=False))


def stack_config(stack_file: str) -> dict[str, Any]:
    from k8s_ha.model.stackfile import read_stack_file

    return copy.deepcopy(read_stack_file(ROOT / stack_file).config)


def on_hypervisor(config: dict[str, Any], uri: str, pool: str | None = None) -> dict[str, Any]:
    """Every hypervisor of the stack reached through `uri` (names, placement and counts unchanged)."""
    config = copy.deepcopy(config)
    for hypervisor in config["hypervisors"]:
        hypervisor["uri"] = uri
        if pool is not None:
            hypervisor["pool"] = pool
    return config


def make_project(directory: Path, stack: str, config: dict[str, Any]) -> Project:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (directory / "state").mkdir(exist_ok=True)
    project = Project(directory, stack, config)
    project.write()
    return project
