"""serve-bundle with the real docker-registry on loopback: files over HTTP, images pushed from the
bundle's OCI layouts and read back by digest through the registry API, two releases' bundles
served at once, a corrupt bundle and two that disagree refused."""

from __future__ import annotations

import hashlib
import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from k8s_ha.cli.bundle import BundleError, Tools, make_bundle
from k8s_ha.cli.serve_bundle import BundleServer
from k8s_ha.model.artifacts import ArtifactVersions
from tests.tools import require_tool
from tests.unit.test_bundle import VERSIONS, private_source

MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, accept: str = "*/*") -> tuple[bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read(), dict(resp.headers)


def assert_served(manifest: dict[str, Any], files_url: str, registry: str) -> None:
    """Every file of `manifest` from the files server and every image from the registry, by digest
    (each image's first layer read back too)."""
    for entry in manifest["files"]:
        body, _ = get(f"{files_url}/{entry['path'].removeprefix('files/')}")
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]
    for entry in manifest["images"]:
        name, tag = entry["path"].rsplit(":", 1)
        body, headers = get(f"http://{registry}/v2/{name}/manifests/{tag}", MANIFEST_TYPES)
        assert headers["Docker-Content-Digest"] == entry["digest"]
        layer = json.loads(body)["layers"][0]["digest"]
        blob, _ = get(f"http://{registry}/v2/{name}/blobs/{layer}")
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer


def test_served_bundle_gives_every_file_and_image_back(tmp_path: Path) -> None:
    registry_bin = require_tool("docker-registry", "serve-bundle's image side")
    files, imgs, settings = private_source(tmp_path / "src")
    manifest = make_bundle(VERSIONS, settings, tmp_path / "bundle", str(files), str(imgs))
    registry = f"127.0.0.1:{free_port()}"
    with BundleServer(tmp_path / "bundle", "127.0.0.1:0", registry, tmp_path / "state", registry_bin) as srv:
        assert_served(manifest, srv.files_url, registry)
        catalog = json.loads(get(f"http://{registry}/v2/_catalog")[0])["repositories"]
        assert {"kube-apiserver", "pause", "coredns/coredns", "flannel-io/flannel"} <= set(catalog)


def test_two_releases_bundles_are_served_together(tmp_path: Path) -> None:
    """An upgrade's two bundles: every file and image of each is served, the shared ones once."""
    registry_bin = require_tool("docker-registry", "serve-bundle's image side")
    older = ArtifactVersions(kubernetes="1.35.4", crictl="1.37.0", cni="flannel")
    manifests = []
    for name, versions in (("new", VERSIONS), ("old", older)):
        files, imgs, settings = private_source(tmp_path / f"src-{name}", versions)
        manifests.append(make_bundle(versions, settings, tmp_path / name, str(files), str(imgs)))
    registry = f"127.0.0.1:{free_port()}"
    with BundleServer([tmp_path / "new", tmp_path / "old"], "127.0.0.1:0", registry, tmp_path / "state",
                      registry_bin) as srv:
        for manifest in manifests:
            assert_served(manifest, srv.files_url, registry)
    assert {e["path"] for e in manifests[0]["images"]} & {e["path"] for e in manifests[1]["images"]}


def test_two_bundles_that_disagree_are_not_served(tmp_path: Path) -> None:
    registry_bin = require_tool("docker-registry", "serve-bundle's image side")
    for name, build in (("first", "private build"), ("second", "another build")):
        files, imgs, settings = private_source(tmp_path / f"src-{name}", build=build)
        make_bundle(VERSIONS, settings, tmp_path / name, str(files), str(imgs))
    server = BundleServer([tmp_path / "first", tmp_path / "second"], "127.0.0.1:0", f"127.0.0.1:{free_port()}",
                          tmp_path / "state", registry_bin)
    with pytest.raises(BundleError, match=r"hold different files/.*; serve them one at a time"):
        server.start()
    assert not (tmp_path / "state").exists()


def test_a_corrupt_bundle_is_not_served(tmp_path: Path) -> None:
    registry_bin = require_tool("docker-registry", "serve-bundle's image side")
    files, imgs, settings = private_source(tmp_path / "src")
    manifest = make_bundle(VERSIONS, settings, tmp_path / "bundle", str(files), str(imgs))
    kubectl = next(e for e in manifest["files"] if e["name"] == "kubectl")
    (tmp_path / "bundle" / kubectl["path"]).write_bytes(b"corrupt")
    server = BundleServer(tmp_path / "bundle", "127.0.0.1:0", f"127.0.0.1:{free_port()}",
                          tmp_path / "state", registry_bin)
    with pytest.raises(BundleError, match=r"^kubectl: sha256 .* does not match the manifest"):
        server.start()
    assert not (tmp_path / "state").exists()


def crane_binary() -> str:
    """The lab build's crane, or the one scripts/test builds, or one on PATH."""
    cache = Path(__file__).resolve().parents[2] / ".cache"
    for built in (cache / "lab-artifacts/bin/crane", cache / "tools/crane-v0.22.1/crane"):
        if built.is_file():
            return str(built)
    return require_tool("crane", "pulls images from a registry source (scripts/test builds it)")


def test_a_bundle_collects_images_from_a_registry_source(tmp_path: Path) -> None:
    registry_bin = require_tool("docker-registry", "serve-bundle's image side")
    crane = crane_binary()
    files, imgs, settings = private_source(tmp_path / "src")
    first = make_bundle(VERSIONS, settings, tmp_path / "first", str(files), str(imgs))
    registry = f"127.0.0.1:{free_port()}"
    with BundleServer(tmp_path / "first", "127.0.0.1:0", registry, tmp_path / "state", registry_bin) as srv:
        mirrored = settings.model_copy(update={"files_repo": srv.files_url})
        second = make_bundle(VERSIONS, mirrored, tmp_path / "second", None, registry, Tools(crane=crane))
    assert [e["digest"] for e in second["images"]] == [e["digest"] for e in first["images"]]
    assert [e["sha256"] for e in second["files"]] == [e["sha256"] for e in first["files"]]
