"""The guest cluster tier (marker `cluster_guests`): kubeadm HA on TCG or KVM guests from the offline
lab bundle (docs/lab.md). On node containers the cluster tier proper runs in every CI run (tests/nodes).

Needs what the guests tier needs plus the lab artifacts (`scripts/lab-artifacts`: the Kubernetes
binaries, images and the bundle built from the Go module proxy). Without them every test is
skipped with the command that builds them. Run alone: `scripts/test --cluster-guests`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.guests.conftest import guests_available, work_dir
from tests.guests.domain_type import DomainTypeProbe, probe_domain_type
from tests.support.lab_artifacts import lab_artifacts_dir, missing_artifacts

ROOT = Path(__file__).resolve().parents[2]
LAB_ARTIFACTS = lab_artifacts_dir()

__all__ = ["guests_available", "missing_artifacts", "work_dir"]


SIZING = ROOT / "bench" / "results" / "cluster_sizing.json"
HEADROOM = 0.8  # the share of the host's cores the idle cluster may use and still converge


def over_capacity(domain_type: str, cores: int, sizing: Path = SIZING) -> str | None:
    """Why this host cannot carry the lab stack, from bench/cluster_sizing.py's measurement of one
    master's idle cost under the same domain type; None when it can (or nothing was measured)."""
    if os.environ.get("K8SHA_CLUSTER_FORCE") == "1" or not sizing.is_file():
        return None
    measured = json.loads(sizing.read_text())
    need = measured.get("projected_lab_stack_percent_without_workers")
    if measured.get("domain_type") != domain_type or need is None or need <= 100 * cores * HEADROOM:
        return None
    return (f"the lab stack's idle control plane alone needs ~{need:.0f} % of a host core under {domain_type} "
            f"(one master measured at {measured['idle_cpu_percent_of_a_core'].get('cp1')} %, "
            f"{measured.get('measured_on')}: {sizing.relative_to(ROOT)}); this machine has {cores} core(s), "
            f"so the cluster would not converge (leader elections lost, joins timed out). "
            f"Run it where guests get hardware virtualisation or on >= {int(need / 100 / HEADROOM) + 1} cores; "
            f"K8SHA_CLUSTER_FORCE=1 runs it anyway")


@pytest.fixture(scope="session")
def lab_artifacts(guests_available: None) -> Path:
    if (reason := missing_artifacts()) is not None:
        pytest.skip(f"cluster tier: {reason}")
    return LAB_ARTIFACTS


@pytest.fixture(scope="session")
def capacity(cluster_image: Path) -> DomainTypeProbe:
    """The guests' domain type (probed once), when this host can carry the cluster; else a skip saying why."""
    probe = probe_domain_type(cluster_image)
    if (reason := over_capacity(probe.domain_type, len(os.sched_getaffinity(0)))) is not None:
        pytest.skip(f"cluster tier: {reason}")
    return probe


@pytest.fixture(scope="session")
def cluster_image(guests_available: None) -> Path:
    """The lab image: LB and etcd packages plus what a Kubernetes node needs."""
    from tests.support.images import lab_image

    return lab_image()
