"""Bad input through the engine path: an invalid stack never reaches the engine; an unreachable
hypervisor is named with its URI instead of a provider stack trace."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from k8s_ha.cli.engine import EXIT_ENGINE, EXIT_INVALID, run
from tests.engine.conftest import make_project, on_hypervisor, stack_config
from tests.engine.testdriver import TestDriverDaemon

pytestmark = pytest.mark.engine


def test_invalid_stack_stops_before_the_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = stack_config("Pulumi.dev.yaml")
    config["hypervisors"][0]["uri"] = "http://not-libvirt"
    config["etcd"]["nodes"][1]["ip"] = config["etcd"]["nodes"][0]["ip"]
    project = make_project(tmp_path, "dev", config)

    result = run("up", "dev", project_dir=project.directory, extra_env=project.env)

    err = capsys.readouterr().err
    assert result.exit_code == EXIT_INVALID
    assert "hypervisors[0].uri" in err and "etcd.nodes[1]" in err, err  # every problem, by config path
    assert not any(project.state_dir.iterdir()), "the engine was started for an invalid stack"


def test_unreachable_hypervisor_is_named_with_its_uri(engine_ready: None, test_driver: TestDriverDaemon,
                                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"test:///default?socket={tmp_path / 'no-daemon' / 'libvirt-sock'}"
    project = make_project(tmp_path / "project", "dev", on_hypervisor(stack_config("Pulumi.dev.yaml"), dead))
    out = io.StringIO()

    result = run("preview", "dev", project_dir=project.directory, extra_env=project.env, out=out)

    err = capsys.readouterr().err
    assert result.exit_code == EXIT_ENGINE
    assert f"hypervisor local ({dead})" in err, err
    for trace in ("Traceback", "goroutine", "panic:"):
        assert trace not in err
