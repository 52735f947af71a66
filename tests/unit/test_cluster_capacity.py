"""The cluster tier's capacity gate: it skips, with the measured numbers, where the idle control
plane would not fit the host's cores (bench/cluster_sizing.py), and runs everywhere else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cluster.conftest import ROOT, over_capacity


def _sizing(tmp_path: Path, need: float, domain_type: str = "qemu") -> Path:
    path = ROOT / ".cache" / f"sizing-{tmp_path.name}.json"  # inside the repo: the message names it relative
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"domain_type": domain_type, "projected_lab_stack_percent_without_workers": need,
                                "idle_cpu_percent_of_a_core": {"cp1": 90.0}, "measured_on": "2026-12-01"}))
    return path


def test_a_host_below_the_measured_need_is_refused_with_the_numbers(tmp_path: Path) -> None:
    sizing = _sizing(tmp_path, 260.0)
    try:
        reason = over_capacity("qemu", 2, sizing)
        assert reason is not None and "~260 %" in reason and "2 core(s)" in reason and ">= 4 cores" in reason
        assert over_capacity("qemu", 4, sizing) is None  # 260 <= 320
        assert over_capacity("kvm", 2, sizing) is None  # measured under another domain type: not comparable
    finally:
        sizing.unlink()


def test_force_and_no_measurement_run_the_tier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert over_capacity("qemu", 1, tmp_path / "absent.json") is None
    sizing = _sizing(tmp_path, 500.0)
    try:
        monkeypatch.setenv("K8SHA_CLUSTER_FORCE", "1")
        assert over_capacity("qemu", 2, sizing) is None
    finally:
        sizing.unlink()
