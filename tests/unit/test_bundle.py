"""The offline bundle's file side: collected from a directory or over real HTTP on loopback,
every file checked against its pin, a missing or corrupt one refused by name."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from k8s_ha.cli.bundle import BundleError, make_bundle, verify_bundle
from k8s_ha.model.artifacts import ArtifactSettings, ArtifactVersions, images, release_files
from tests.support.oci import write_layout

VERSIONS = ArtifactVersions(kubernetes="1.36.4", crictl="1.37.0", cni="flannel")


def private_source(root: Path, versions: ArtifactVersions = VERSIONS, build: str = "private build"
                   ) -> tuple[Path, Path, ArtifactSettings]:
    """An upstream-shaped directory of made-up release files and images, with their own table
    (`build` goes into every file, so two builds of one release can differ)."""
    files, imgs = root / "files", root / "images"
    table: dict[str, dict[str, str]] = {}
    for f in release_files(versions, ArtifactSettings(checksums={"crictl": {"1.37.0": "0" * 64}})):
        data = f"{f.component} {f.version} {build}\n".encode()
        (files / f.path).parent.mkdir(parents=True, exist_ok=True)
        (files / f.path).write_bytes(data)
        table.setdefault(f.component, {})[f.version] = hashlib.sha256(data).hexdigest()
    for image in images(versions):
        write_layout(imgs / image.upstream_path.replace(":", "/"), image.ref, image.ref.encode())
    return files, imgs, ArtifactSettings(checksums=table)


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "web"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_bundle_from_a_directory_has_a_manifest_of_names_sizes_and_sha256(tmp_path: Path) -> None:
    files, imgs, settings = private_source(tmp_path / "src")
    manifest = make_bundle(VERSIONS, settings, tmp_path / "out", str(files), str(imgs))
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk == manifest
    assert {e["name"] for e in manifest["files"]} >= {"kubeadm", "runc.amd64", "crictl-v1.37.0-linux-amd64.tar.gz"}
    for entry in manifest["files"]:
        data = (tmp_path / "out" / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["size"]
    assert {e["ref"] for e in manifest["images"]} == {i.ref for i in images(VERSIONS)}
    assert verify_bundle(tmp_path / "out")["files"] == manifest["files"]


def test_bundle_over_http_and_through_the_files_repo_setting(tmp_path: Path, http_root: tuple[Path, str]) -> None:
    files, imgs, settings = private_source(tmp_path / "src")
    web, url = http_root
    for f in files.rglob("*"):
        if f.is_file():
            (web / "mirror" / f.relative_to(files)).parent.mkdir(parents=True, exist_ok=True)
            (web / "mirror" / f.relative_to(files)).write_bytes(f.read_bytes())
    via_flag = make_bundle(VERSIONS, settings, tmp_path / "a", f"{url}/mirror", str(imgs))
    mirrored = settings.model_copy(update={"files_repo": f"{url}/mirror"})
    via_setting = make_bundle(VERSIONS, mirrored, tmp_path / "b", None, str(imgs))
    assert [e["sha256"] for e in via_flag["files"]] == [e["sha256"] for e in via_setting["files"]]


def test_a_corrupt_file_is_refused_by_name_and_not_kept(tmp_path: Path, http_root: tuple[Path, str]) -> None:
    files, imgs, settings = private_source(tmp_path / "src")
    web, url = http_root
    kubelet = next(f for f in release_files(VERSIONS, settings) if f.component == "kubelet")
    for f in files.rglob("*"):
        if f.is_file():
            (web / f.relative_to(files)).parent.mkdir(parents=True, exist_ok=True)
            (web / f.relative_to(files)).write_bytes(f.read_bytes())
    (web / kubelet.path).write_bytes(b"tampered")
    with pytest.raises(BundleError, match=r"^kubelet: sha256 [0-9a-f]{64} does not match the pinned"):
        make_bundle(VERSIONS, settings, tmp_path / "out", url, str(imgs))
    assert not list((tmp_path / "out" / "files").rglob("kubelet*"))


def test_a_missing_file_is_refused_by_name(tmp_path: Path, http_root: tuple[Path, str]) -> None:
    files, imgs, settings = private_source(tmp_path / "src")
    etcd = next(f for f in release_files(VERSIONS, settings) if f.component == "etcd")
    (files / etcd.path).unlink()
    with pytest.raises(BundleError, match=rf"^{etcd.name}: missing"):
        make_bundle(VERSIONS, settings, tmp_path / "out", str(files), str(imgs))
    _, url = http_root
    with pytest.raises(BundleError, match=r"^kubeadm: missing \(404 from http://127\.0\.0\.1:"):
        make_bundle(VERSIONS, settings, tmp_path / "fresh", url, str(imgs))


def test_verify_refuses_a_bundle_changed_after_export(tmp_path: Path) -> None:
    files, imgs, settings = private_source(tmp_path / "src")
    out = tmp_path / "out"
    manifest = make_bundle(VERSIONS, settings, out, str(files), str(imgs))
    runc = next(e for e in manifest["files"] if e["component"] == "runc")
    (out / runc["path"]).write_bytes(b"swapped")
    with pytest.raises(BundleError, match=r"^runc\.amd64: sha256 .* does not match the manifest"):
        verify_bundle(out)
    (out / runc["path"]).unlink()
    with pytest.raises(BundleError, match=r"^runc\.amd64: missing from the bundle"):
        verify_bundle(out)


def test_a_corrupt_image_blob_is_refused_with_the_image_name(tmp_path: Path) -> None:
    files, imgs, settings = private_source(tmp_path / "src")
    pause = next(i for i in images(VERSIONS) if i.component == "pause")
    layout = imgs / pause.upstream_path.replace(":", "/")
    blob = max((layout / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    with pytest.raises(BundleError, match=rf"^{pause.ref}: blob [0-9a-f]{{12}} is corrupt"):
        make_bundle(VERSIONS, settings, tmp_path / "out", str(files), str(imgs))


def test_a_rerun_keeps_verified_files(tmp_path: Path) -> None:
    files, imgs, settings = private_source(tmp_path / "src")
    out = tmp_path / "out"
    make_bundle(VERSIONS, settings, out, str(files), str(imgs))
    stamp = {p: p.stat().st_mtime_ns for p in (out / "files").rglob("*") if p.is_file()}
    for f in files.rglob("*"):
        if f.is_file():
            f.unlink()  # the source is gone: a rerun must not need it
    make_bundle(VERSIONS, settings, out, str(files), str(imgs))
    assert stamp == {p: p.stat().st_mtime_ns for p in (out / "files").rglob("*") if p.is_file()}


def test_a_custom_image_repository_takes_images_from_their_upstream_names(tmp_path: Path) -> None:
    files, imgs, settings = private_source(tmp_path / "src")
    custom = ArtifactVersions(kubernetes="1.36.4", crictl="1.37.0", cni="flannel", image_repository="10.0.0.5:5000/k8s")
    manifest = make_bundle(custom, settings, tmp_path / "out", str(files), str(imgs))
    paths = {e["component"]: e["path"] for e in manifest["images"]}
    assert paths["coredns"] == "k8s/coredns:v1.14.2" and paths["pause"] == "k8s/pause:3.10.2"
