"""Cluster tier: kubeadm HA on real guests from the offline lab bundle (docs/lab.md, "Cluster tier").

Needs what the guests tier needs plus the lab artifacts (`scripts/lab-artifacts`: the Kubernetes
binaries, images and the bundle built from the Go module proxy). Without them every test is
skipped with the command that builds them. Run alone: `scripts/test --cluster`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.guests.conftest import guests_available, work_dir

ROOT = Path(__file__).resolve().parents[2]
LAB_ARTIFACTS = Path(os.environ.get("K8SHA_LAB_ARTIFACTS", ROOT / ".cache" / "lab-artifacts"))

__all__ = ["guests_available", "work_dir"]


def missing_artifacts(cache: Path = LAB_ARTIFACTS) -> str | None:
    """Why the lab artifacts cannot be used, or None."""
    for need in ("bundle/manifest.json", "source/checksums.json"):
        if not (cache / need).is_file():
            return f"the lab artifacts are not built ({cache / need} is missing): run scripts/lab-artifacts (~1 h)"
    if not list((cache / "source" / "images" / "e2e-test-images" / "agnhost").glob("*/index.json")):
        return "the agnhost test image is not built: run scripts/lab-artifacts images"
    if not list((cache / "bin").glob("kubernetes-*/kubectl")):
        return "no kubectl in the lab artifacts: run scripts/lab-artifacts kubernetes"
    return None


@pytest.fixture(scope="session")
def lab_artifacts(guests_available: None) -> Path:
    if (reason := missing_artifacts()) is not None:
        pytest.skip(f"cluster tier: {reason}")
    return LAB_ARTIFACTS


@pytest.fixture(scope="session")
def cluster_image(guests_available: None) -> Path:
    """One base image for every role: LB and etcd packages plus what a Kubernetes node needs."""
    from k8s_ha.cli.image import ImageRecipe, build, packages_for

    started = time.monotonic()
    image = build(ImageRecipe(packages=packages_for(["loadbalancer", "etcd", "kubernetes"], [])),
                  ROOT / ".cache" / "images")
    print(f"base image {image.name}: ready in {time.monotonic() - started:.0f} s")
    return image
