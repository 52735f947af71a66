"""The offline CLI: exit codes and output people and scripts rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from k8s_ha.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stack", ["Pulumi.dev.yaml", "Pulumi.prod.yaml", "Pulumi.staging.yaml"])
def test_validate_examples_exit_0(stack: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--stack-file", str(ROOT / stack)]) == 0
    assert "valid" in capsys.readouterr().out


def test_validate_dev_warns_not_ha(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--stack-file", str(ROOT / "Pulumi.dev.yaml")]) == 0
    assert "NOT HIGHLY AVAILABLE" in capsys.readouterr().err


def test_validate_broken_copy_exits_2_with_all_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "Pulumi.prod.yaml").read_text()
    text = text.replace("{name: etcd5, ip: 10.20.0.25}", "{name: etcd5, ip: 10.20.0.11}")
    text = text.replace("{name: cp3, ip: 10.20.0.33}", "{name: cp3, ip: 10.99.0.33, hypervisor: hv7}")
    text = text.replace("retain: 96", "retian: 96")
    broken = tmp_path / "Pulumi.broken.yaml"
    broken.write_text(text)
    assert main(["validate", "--stack-file", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "4 problem(s)" in err
    for expected in (
        "etcd.nodes[4].ip: 10.20.0.11 is already used by loadBalancer.nodes[0]",
        "controlPlane.nodes[2].ip: 10.99.0.33 is outside the node network 10.20.0.0/24",
        "controlPlane.nodes[2].hypervisor: unknown hypervisor 'hv7'",
        "etcd.backup.retian: unknown key",
    ):
        assert expected in err


def test_unreadable_stack_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--stack-file", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read the stack file" in capsys.readouterr().err


def test_plan_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--stack-file", str(ROOT / "Pulumi.prod.yaml")]) == 0
    out = capsys.readouterr().out
    assert "NODE" in out and "HYPERVISOR" in out and "Fault tolerance" in out
    assert "etcd1" in out and "DEGRADED" in out


def test_plan_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--stack-file", str(ROOT / "Pulumi.dev.yaml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["vip"] == "192.168.122.10" and len(data["nodes"]) == 9
    assert data["faultTolerance"]["highlyAvailable"] is False
    assert data["faultTolerance"]["losses"][0]["verdict"] == "down"


def test_module_entry_point_usage_error_exits_2() -> None:
    result = subprocess.run([sys.executable, "-m", "k8s_ha", "plan"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "--stack-file" in result.stderr


def test_validate_refuses_timers_that_break_their_relations_each_at_its_path(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The failover timers' documented relations, all broken in one file: every rule and path in one run."""
    config = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    values = config["config"]
    values["k8s-ha:etcd"].update(heartbeatIntervalMs=200, electionTimeoutMs=600)  # fewer than 5 heartbeats
    values["k8s-ha:loadBalancer"].update(haproxyCheck={"intervalS": 1, "timeoutS": 2}, advertIntervalMs=250,
                                         vrrpVersion=2)
    broken = tmp_path / "Pulumi.timers.yaml"
    broken.write_text(yaml.safe_dump(config))
    assert main(["validate", "--stack-file", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "3 problem(s)" in err, err
    for expected in (
        "etcd.electionTimeoutMs: should be at least 5x heartbeatIntervalMs",
        "got 600 ms < 5 x 200 ms",
        "loadBalancer.haproxyCheck.timeoutS: must not exceed intervalS",
        "loadBalancer.advertIntervalMs: VRRPv2 adverts are whole seconds",
    ):
        assert expected in err, err
