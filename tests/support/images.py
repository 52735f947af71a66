"""The one base image of every lab tier: Debian 13 with every role's packages, built once by the
`image` command's recipe as a qcow2 (libvirt guests) and a root file system tar (node containers),
cached in .cache/images. One image means one build per machine for the guests and cluster tiers."""

from __future__ import annotations

import time
from pathlib import Path

from k8s_ha.cli.image import ImageRecipe, build, packages_for

ROOT = Path(__file__).resolve().parents[2]
LAB_ROLES = ["loadbalancer", "etcd", "kubernetes"]


def lab_image() -> Path:
    """The qcow2 (its rootfs tar beside it: k8s_ha.cli.image.rootfs_path)."""
    started = time.monotonic()
    image = build(ImageRecipe(packages=packages_for(LAB_ROLES, [])), ROOT / ".cache" / "images", rootfs=True)
    print(f"lab image {image.name}: ready in {time.monotonic() - started:.0f} s")
    return image
