"""The one base image of every lab tier: Debian 13 with every role's packages, built once by the
`image` command's recipe as a qcow2 (libvirt guests) and a root file system tar (node containers),
cached beside Go's caches (~/.cache/k8s-ha/images, or K8SHA_IMAGES): one build per machine for the
guests and cluster tiers, whichever clone runs them."""

from __future__ import annotations

import os
import time
from pathlib import Path

from k8s_ha.cli.image import ImageRecipe, build, packages_for

LAB_ROLES = ["loadbalancer", "etcd", "kubernetes"]


def images_dir() -> Path:
    if os.environ.get("K8SHA_IMAGES"):
        return Path(os.environ["K8SHA_IMAGES"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "k8s-ha" / "images"


def lab_image() -> Path:
    """The qcow2 (its rootfs tar beside it: k8s_ha.cli.image.rootfs_path)."""
    started = time.monotonic()
    image = build(ImageRecipe(packages=packages_for(LAB_ROLES, [])), images_dir(), rootfs=True)
    print(f"lab image {image.name}: ready in {time.monotonic() - started:.0f} s")
    return image
