"""`python -m k8s_ha image`: build the guests' base image from Debian packages only.

The air-gapped alternative to Debian's published genericcloud image (which stays the default
download): debootstrap + kernel + systemd + sshd + cloud-init (NoCloud) + guest agent, optionally
with a role's packages baked in, as image-builder does for Cluster API node images. The output is
a qcow2 with its sha256 beside it (`sha256sum` format); a second build with the same inputs reuses
it, so CI caches it in an ignored directory.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from k8s_ha.render.templating import CONFIGS

SCRIPT = CONFIGS / "image" / "build.sh"
SUITES = {"trixie": "13", "bookworm": "12"}
ROLE_PACKAGES = {
    "loadbalancer": ("haproxy", "keepalived"),
    "etcd": ("etcd-server", "etcd-client"),
    # What k8s-node.sh would otherwise apt-get (release files bring the rest); kmod for modprobe.
    "kubernetes": ("ca-certificates", "conntrack", "curl", "kmod", "systemd-timesyncd"),
}
TOOLS = ("debootstrap", "mkfs.ext4", "mkfs.vfat", "mcopy", "syslinux", "sfdisk", "qemu-img")


class ImageError(RuntimeError):
    """The image cannot be built or does not match its checksum."""


@dataclass(frozen=True)
class ImageRecipe:
    suite: str = "trixie"
    mirror: str = "http://deb.debian.org/debian"
    root_mib: int = 2048
    packages: tuple[str, ...] = ()

    def digest(self) -> str:
        """Names the image after everything that shapes it, the build script included."""
        text = "\n".join([SCRIPT.read_text(), self.suite, self.mirror, str(self.root_mib), *sorted(self.packages)])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def file_name(self) -> str:
        return f"debian-{SUITES.get(self.suite, self.suite)}-k8s-ha-{self.digest()}.qcow2"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_path(image: Path) -> Path:
    return image.with_name(image.name + ".sha256")


def verify(image: Path) -> str:
    """The image's sha256, after checking it against the file beside it."""
    sums = checksum_path(image)
    if not image.is_file() or not sums.is_file():
        raise ImageError(f"{image}: image or its checksum file {sums.name} is missing")
    expected = sums.read_text().split()[0]
    actual = sha256_file(image)
    if actual != expected:
        raise ImageError(f"{image}: sha256 is {actual}, but {sums.name} says {expected}: "
                         "the image is damaged or was replaced; delete both and build again")
    return actual


def rootfs_path(image: Path) -> Path:
    """The same recipe's root file system as a tar, beside the qcow2 (node containers boot it)."""
    return image.with_name(image.name.removesuffix(".qcow2") + ".rootfs.tar")


def build(recipe: ImageRecipe, out_dir: Path, *, force: bool = False, rootfs: bool = False) -> Path:
    """Build (or reuse) the image for `recipe` in `out_dir`; returns its path. `rootfs`: also
    write the configured root file system as a tar (`rootfs_path`) for system containers."""
    image = out_dir / recipe.file_name()
    if image.exists() and not force and (not rootfs or rootfs_path(image).is_file()):
        verify(image)
        return image
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise ImageError(f"missing tools: {' '.join(missing)} (Debian packages: debootstrap e2fsprogs "
                         "dosfstools mtools syslinux syslinux-common fdisk qemu-utils)")
    out_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["bash", str(SCRIPT), str(image), recipe.suite, recipe.mirror, str(recipe.root_mib),
                           ",".join(recipe.packages), *([str(rootfs_path(image))] if rootfs else [])], check=False)
    if done.returncode != 0:
        image.unlink(missing_ok=True)
        raise ImageError(f"building {image.name} failed (exit {done.returncode}; the build's log is above)")
    checksum_path(image).write_text(f"{sha256_file(image)}  {image.name}\n")
    return image


def packages_for(roles: list[str], extra: list[str]) -> tuple[str, ...]:
    unknown = [r for r in roles if r not in ROLE_PACKAGES]
    if unknown:
        raise ImageError(f"unknown role(s) {unknown}; known: {sorted(ROLE_PACKAGES)}")
    return tuple(sorted({p for r in roles for p in ROLE_PACKAGES[r]} | set(extra)))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", default="trixie", help="Debian suite (default trixie, Debian 13)")
    parser.add_argument("--mirror", default=ImageRecipe.mirror, help="Debian mirror (an internal one when air-gapped)")
    parser.add_argument("--role", action="append", default=[], choices=sorted(ROLE_PACKAGES),
                        help="bake in a role's packages (repeatable)")
    parser.add_argument("--package", action="append", default=[], help="bake in another Debian package (repeatable)")
    parser.add_argument("--root-mib", type=int, default=ImageRecipe.root_mib,
                        help="root file system size in MiB (default %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=Path(".cache/images"),
                        help="where the qcow2 and its .sha256 go (default %(default)s, under the current directory)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the image exists")


def run(args: argparse.Namespace) -> int:
    try:
        recipe = ImageRecipe(suite=args.suite, mirror=args.mirror, root_mib=args.root_mib,
                             packages=packages_for(args.role, args.package))
        started = time.monotonic()
        image = build(recipe, args.out_dir, force=args.force)
    except ImageError as exc:
        print(f"image: {exc}", file=sys.stderr)
        return 1
    print(f"{image} ({image.stat().st_size >> 20} MiB, {time.monotonic() - started:.0f} s)")
    print(checksum_path(image))
    return 0
