"""Guests tier: the program's LB and etcd VMs as real libvirt guests on two lab hypervisors.

Needs root, libvirtd + QEMU, libvirt's Python binding, debootstrap (the base image is built once
and cached in ~/.cache/k8s-ha/images). Where anything is missing every test is skipped with the reason
(pytest -ra), or fails under K8SHA_REQUIRE_TOOLS=1 as in CI. Run alone: `scripts/test --guests`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tools import require_root, require_tool

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("libvirtd", "qemu-system-x86_64", "qemu-img", "genisoimage", "xsltproc", "debootstrap", "mkfs.vfat",
         "mcopy", "syslinux", "sfdisk", "ssh", "etcdctl", "ip")


def _unavailable(reason: str) -> None:
    message = f"guests tier cannot run here: {reason}"
    if os.environ.get("K8SHA_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def guests_available() -> None:
    require_root("the guests tier starts libvirt daemons and network namespaces")
    for tool in TOOLS:
        require_tool(tool, "the guests tier runs the real binary")
    from tests.guests.binding import missing_reason

    if (reason := missing_reason()) is not None:
        _unavailable(reason)
    from tests.guests.hypervisors import cleanup_stale

    cleanup_stale()


@pytest.fixture(scope="session")
def base_image(guests_available: None) -> Path:
    """The lab image (every role's packages baked in), built once and cached."""
    from tests.support.images import lab_image

    return lab_image()


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("guests")
    yield path
    shutil.rmtree(path, ignore_errors=True)
