"""The image path end to end with a real containerd (Debian's 1.x and the lab's 2.x build):
images served from a bundle by serve-bundle, pulled by their upstream names (registry.k8s.io/...,
ghcr.io/...) through the hosts.toml that `artifacts.imageRegistry` renders. No route out: only
the loopback mirror answers."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from k8s_ha.cli.bundle import make_bundle
from k8s_ha.cli.serve_bundle import BundleServer
from k8s_ha.model.artifacts import ArtifactSettings, images
from k8s_ha.render.registry_mirrors import CERTS_D, mirror_hosts
from tests.render.test_bundle_registry import free_port
from tests.tools import require_root, require_tool
from tests.unit.test_bundle import VERSIONS, private_source

CONFIG = """version = 2
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
"""


def lab_containerd(tmp_path: Path) -> tuple[str, str]:
    """containerd and ctr from the lab build's release tarball (scripts/lab-artifacts containerd)."""
    from tests.render.test_lab_artifacts import VER, release, unpack

    out = unpack(release("containerd", VER.containerd), tmp_path / "containerd-release")
    return str(out / "bin" / "containerd"), str(out / "bin" / "ctr")


@pytest.mark.parametrize("build", ["debian", "lab"])
def test_containerd_pulls_every_image_through_the_served_bundle(tmp_path: Path, build: str) -> None:
    require_root("containerd runs as root")
    if build == "lab":
        containerd, ctr = lab_containerd(tmp_path)
    else:
        containerd = require_tool("containerd", "pulls through the mirror")
        ctr = require_tool("ctr", "containerd's client")
    registry_bin = require_tool("docker-registry", "serve-bundle's image side")
    files, imgs, settings = private_source(tmp_path / "src")
    manifest = make_bundle(VERSIONS, settings, tmp_path / "bundle", str(files), str(imgs))
    registry = f"127.0.0.1:{free_port()}"
    hosts = tmp_path / "certs.d"
    served = mirror_hosts(ArtifactSettings(imageRegistry=registry), images(VERSIONS), plain_http=True)  # serve-bundle
    for path, content in served.items():
        target = hosts / Path(path).relative_to(CERTS_D)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    sock = str(tmp_path / "c.sock")
    (tmp_path / "config.toml").write_text(CONFIG.format(sock=sock))
    with BundleServer(tmp_path / "bundle", "127.0.0.1:0", registry, tmp_path / "state", registry_bin):
        log = (tmp_path / "containerd.log").open("wb")
        daemon = subprocess.Popen(
            [containerd, "--config", str(tmp_path / "config.toml"), "--root", str(tmp_path / "root"),
             "--state", str(tmp_path / "run")], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(sock) and time.monotonic() < deadline:
                time.sleep(0.2)
            base = [ctr, "--address", sock, "--namespace", "k8s.io"]
            for entry in manifest["images"]:
                pull = subprocess.run([*base, "images", "pull", "--hosts-dir", str(hosts), entry["ref"]],
                                      capture_output=True, text=True, timeout=120, check=False)
                assert pull.returncode == 0, pull.stderr + (tmp_path / "containerd.log").read_text()[-2000:]
            listed = subprocess.run([*base, "images", "ls"], capture_output=True, text=True, check=True).stdout
            for entry in manifest["images"]:
                line = next(ln for ln in listed.splitlines() if ln.startswith(entry["ref"] + " "))
                assert entry["digest"] in line
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
