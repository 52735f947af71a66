"""The cluster tier on node containers (marker `cluster`): kubeadm HA from the program's own steps
on LXC system containers booted from the program's own image, at native speed.

Needs root, LXC, iproute2, ssh and the lab artifacts (`scripts/lab-artifacts`, which
`scripts/test` runs first; cached outside the checkout). Where anything is missing every test is
skipped with the reason, or fails under K8SHA_REQUIRE_TOOLS=1 as in CI. Run alone:
`scripts/test --cluster`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.support.lab_artifacts import lab_artifacts_dir, missing_artifacts
from tests.tools import require_root, require_tool

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("lxc-start", "lxc-stop", "lxc-info", "lxc-wait", "ip", "ssh", "ssh-keygen", "debootstrap", "mkfs.ext4")


def _unavailable(reason: str) -> None:
    message = f"cluster tier cannot run here: {reason}"
    if os.environ.get("K8SHA_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def nodes_available() -> None:
    require_root("the cluster tier starts system containers, network namespaces and cgroups")
    for tool in TOOLS:
        require_tool(tool, "the cluster tier runs the real binary")
    from tests.nodes.containers import cleanup_stale

    cleanup_stale()


@pytest.fixture(scope="session")
def lab_artifacts(nodes_available: None) -> Path:
    if (reason := missing_artifacts()) is not None:
        _unavailable(reason)
    return lab_artifacts_dir()


@pytest.fixture(scope="session")
def node_rootfs(nodes_available: None) -> Path:
    """The program's base image (every role's packages) as an unpacked root file system: the
    shared lower layer of every node's overlay root."""
    from k8s_ha.cli.image import rootfs_path
    from tests.nodes.containers import unpacked_rootfs
    from tests.support.images import lab_image

    started = time.monotonic()
    lower = unpacked_rootfs(rootfs_path(lab_image()))
    print(f"node root file system: ready in {time.monotonic() - started:.0f} s")
    return lower


@pytest.fixture(scope="session")
def engine_installed(nodes_available: None) -> None:
    """The engine driver runs where the pulumi CLI and every provider plugin are installed; the
    replay driver (test_node_cluster.py) covers the same stack everywhere else."""
    from tests.engine.conftest import missing_engine

    if (reason := missing_engine()) is not None:
        print(f"\ncluster tier, engine driver: SKIPPING: {reason}")
        pytest.skip(f"engine driver skipped: {reason}")
