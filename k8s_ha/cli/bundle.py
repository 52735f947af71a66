"""`bundle`: collect every file and image a stack needs into one directory, for air-gapped sites.

Like KubeKey's `kk artifact export` and Kubespray's offline scripts: files are fetched from their
configured source (upstream, `artifacts.filesRepo`, or `--files-source` URL or directory laid out
as `<host>/<path>`), each checked against its pinned sha256 before it is kept; images are copied as
OCI layouts (from a registry with crane, or from a directory of layouts). `manifest.json` lists
every name with its size and sha256, so `verify` and `serve-bundle` refuse a missing or corrupt
entry by name. A rerun keeps what is already there and verified, so a stopped export resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from k8s_ha.model.artifacts import (
    COMPONENTS,
    ArtifactSettings,
    ArtifactVersions,
    Image,
    ReleaseFile,
    checksum_table,
    images,
    release_files,
)
from k8s_ha.model.spec import StackSpec

MANIFEST = "manifest.json"
STACK_PINS = "stack-artifacts.yaml"  # checksums and imageDigests to paste into a stack
CHUNK = 1 << 20
TIMEOUT_S = 60


class BundleError(RuntimeError):
    """A file or image that cannot go into (or come out of) a bundle; the message names it."""


def versions_of(spec: StackSpec) -> ArtifactVersions:
    """The versions and add-ons of a stack that decide its files and images."""
    return spec.artifact_versions()


def components_of(spec: StackSpec) -> frozenset[str]:
    """The release files a stack installs: etcd's only when it comes from the upstream release."""
    wanted = set(COMPONENTS)
    if spec.etcd.source.kind != "release":
        wanted.discard("etcd")
    return frozenset(wanted)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(source: str, dest: Path) -> None:
    """Copy a local path or download a URL to `dest`; BundleError if it is not there."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if "://" not in source:
        if not Path(source).is_file():
            raise BundleError(f"{Path(source).name}: missing (not found at {source})")
        shutil.copyfile(source, dest)
        return
    try:
        with urllib.request.urlopen(source, timeout=TIMEOUT_S) as resp, dest.open("wb") as out:
            shutil.copyfileobj(resp, out, CHUNK)
    except urllib.error.HTTPError as exc:
        raise BundleError(f"{source.rsplit('/', 1)[1]}: missing ({exc.code} from {source})") from None
    except (urllib.error.URLError, OSError) as exc:
        raise BundleError(f"{source.rsplit('/', 1)[1]}: cannot fetch {source}: {exc}") from None


def _source_of(item: ReleaseFile, files_source: str | None) -> str:
    if files_source is None:
        return item.url
    base = files_source.rstrip("/")
    return f"{base}/{item.path}" if "://" in base else str(Path(base) / item.path)


def collect_file(item: ReleaseFile, files_source: str | None, out: Path) -> dict[str, Any]:
    """One pinned file into `out/files/<host>/<path>`, refused (and not kept) on a wrong sha256."""
    dest = out / "files" / item.path
    if not (dest.is_file() and sha256_file(dest) == item.sha256):
        part = dest.with_name(dest.name + ".part")
        _fetch(_source_of(item, files_source), part)
        got = sha256_file(part)
        if got != item.sha256:
            part.unlink()
            raise BundleError(
                f"{item.name}: sha256 {got} does not match the pinned {item.sha256} "
                f"({item.component} {item.version}); refused"
            )
        os.replace(part, dest)
    return {
        "component": item.component, "version": item.version, "name": item.name,
        "path": f"files/{item.path}", "upstream": item.upstream,
        "size": dest.stat().st_size, "sha256": item.sha256,
    }


@dataclass(frozen=True)
class Tools:
    """External programs the image side uses (crane from go-containerregistry)."""

    crane: str = "crane"


def _layout_dir(out: Path, image: Image) -> Path:
    return out / "images" / image.path.replace(":", "/")


def verify_layout(layout: Path, label: str) -> tuple[str, int]:
    """Every blob's sha256 equals its name; returns the image manifest digest and total size."""
    index_file = layout / "index.json"
    if not index_file.is_file():
        raise BundleError(f"{label}: missing (no OCI layout at {layout})")
    index = json.loads(index_file.read_text())
    manifests = index.get("manifests", [])
    if len(manifests) != 1:
        raise BundleError(f"{label}: expected one image in {layout}, found {len(manifests)}")
    size = 0
    for blob in sorted((layout / "blobs" / "sha256").iterdir()):
        if sha256_file(blob) != blob.name:
            raise BundleError(f"{label}: blob {blob.name[:12]} is corrupt (sha256 mismatch); refused")
        size += blob.stat().st_size
    digest = str(manifests[0]["digest"])
    if not (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).is_file():
        raise BundleError(f"{label}: manifest {digest} missing from its layout")
    return digest, size


def collect_image(image: Image, images_source: str | None, out: Path, tools: Tools) -> dict[str, Any]:
    """One image as an OCI layout under `out/images/<path>/<tag>`, found in the source by its upstream name."""
    dest = _layout_dir(out, image)
    if not (dest / "index.json").is_file():
        tmp = dest.with_name(dest.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        if images_source is not None and Path(images_source).is_dir():
            src = Path(images_source) / image.upstream_path.replace(":", "/")
            if not (src / "index.json").is_file():
                raise BundleError(f"{image.ref}: missing (no OCI layout at {src})")
            shutil.copytree(src, tmp)
        else:
            ref = f"{images_source}/{image.upstream_path}" if images_source else (image.upstream or image.ref)
            run = subprocess.run(
                [tools.crane, "pull", "--format=oci", "--platform=linux/amd64", "--insecure", ref, str(tmp)],
                capture_output=True, text=True, check=False,
            )
            if run.returncode != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                raise BundleError(f"{image.ref}: cannot pull {ref}: {run.stderr.strip()[-300:]}")
        try:
            verify_layout(tmp, image.ref)
        except BundleError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
    digest, size = verify_layout(dest, image.ref)
    return {"component": image.component, "ref": image.ref, "path": image.path,
            "layout": str(dest.relative_to(out)), "digest": digest, "size": size}


def make_bundle(
    ver: ArtifactVersions,
    settings: ArtifactSettings,
    out: Path,
    files_source: str | None = None,
    images_source: str | None = None,
    tools: Tools | None = None,
    only: frozenset[str] | None = None,
) -> dict[str, Any]:
    """Collect everything into `out` and write its manifest; BundleError names the first refusal."""
    tools = tools or Tools()
    out.mkdir(parents=True, exist_ok=True)
    wanted = release_files(ver, settings, only)
    files = [collect_file(item, files_source, out) for item in wanted]
    imgs = [collect_image(image, images_source, out, tools) for image in images(ver)]
    table = checksum_table(settings)
    manifest = {
        "format": 1,
        "versions": {"kubernetes": ver.kubernetes, "containerd": ver.containerd, "runc": ver.runc,
                     "cniPlugins": ver.cni_plugins, "crictl": ver.crictl, "etcd": ver.etcd},
        "imageRepository": ver.image_repository,
        "files": files,
        "images": imgs,
        "checksums": {f.component: {f.version: table[f.component][f.version]} for f in wanted},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    (out / STACK_PINS).write_text(stack_pins(manifest))
    return manifest


def stack_pins(manifest: dict[str, Any]) -> str:
    """The stack's `artifacts` entries that pin what this bundle holds: every file's sha256 and
    every image's manifest digest (the nodes then run exactly these images)."""
    pins = {"checksums": manifest["checksums"],
            "imageDigests": {entry["ref"]: entry["digest"] for entry in manifest["images"]}}
    return ("# k8s-ha:artifacts entries for a stack that installs from this bundle: merge them into\n"
            "# the stack file's k8s-ha:artifacts block.\n" + yaml.safe_dump(pins, sort_keys=True))


def verify_bundle(out: Path) -> dict[str, Any]:
    """Re-check every file and image blob of a bundle against its manifest."""
    manifest_file = out / MANIFEST
    if not manifest_file.is_file():
        raise BundleError(f"{MANIFEST}: missing in {out}; not a bundle")
    manifest: dict[str, Any] = json.loads(manifest_file.read_text())
    for entry in manifest["files"]:
        path = out / entry["path"]
        if not path.is_file():
            raise BundleError(f"{entry['name']}: missing from the bundle ({entry['path']})")
        got = sha256_file(path)
        if got != entry["sha256"]:
            raise BundleError(f"{entry['name']}: sha256 {got} does not match the manifest's {entry['sha256']}; refused")
    for entry in manifest["images"]:
        digest, _ = verify_layout(out / entry["layout"], entry["ref"])
        if digest != entry["digest"]:
            raise BundleError(f"{entry['ref']}: manifest digest {digest} is not the recorded {entry['digest']}")
    return manifest
