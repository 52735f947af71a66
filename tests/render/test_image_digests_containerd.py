"""Images by digest with a real containerd: `k8s_pin_images` (the node's shell function) pulls each
pinned digest through the rendered hosts.toml from the served bundle and points the tag kubeadm and
the kubelet use at it; a second run does nothing; a tag a registry moved is put back; a digest the
mirror does not have stops the step with the ref and the setting named."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from k8s_ha.cli.bundle import make_bundle
from k8s_ha.cli.serve_bundle import BundleServer
from k8s_ha.model.artifacts import ArtifactSettings, images, node_pinned_images
from k8s_ha.render.registry_mirrors import CERTS_D, mirror_hosts
from tests.render.test_bundle_containerd import CONFIG, lab_containerd
from tests.render.test_bundle_registry import free_port
from tests.tools import require_root, require_tool
from tests.unit.test_bundle import VERSIONS, private_source

SCRIPTS = Path(__file__).resolve().parents[2] / "configs" / "scripts"


@contextmanager
def containerd(binary: str, work: Path) -> Iterator[str]:
    """A containerd of its own under `work`; yields its socket."""
    sock = str(work / "c.sock")
    (work / "config.toml").write_text(CONFIG.format(sock=sock))
    log = (work / "containerd.log").open("wb")
    daemon = subprocess.Popen([binary, "--config", str(work / "config.toml"), "--root", str(work / "root"),
                               "--state", str(work / "run")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.2)
        yield sock
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


def pin(table: Path, hosts: Path, ctr: list[str]) -> subprocess.CompletedProcess[str]:
    """k8s_pin_images as a node step runs it (lib.sh and k8s-lib.sh, strict mode)."""
    script = (f"set -euo pipefail\nsource {SCRIPTS / 'lib.sh'}\nsource {SCRIPTS / 'k8s-lib.sh'}\n"
              'k8s_pin_images "$@"\n')
    return subprocess.run(["bash", "-c", script, "pin", str(table), str(hosts), *ctr],
                          capture_output=True, text=True, timeout=300, check=False)


def tag_digest(ctr: list[str], ref: str) -> str:
    listed = subprocess.run([*ctr, "-n", "k8s.io", "images", "ls", f"name=={ref}"], capture_output=True,
                            text=True, check=True).stdout.splitlines()
    return listed[1].split()[2] if len(listed) > 1 else ""


@pytest.mark.parametrize("build", ["debian", "lab"])
def test_pinned_tags_point_at_their_digests_through_the_mirror(tmp_path: Path, build: str) -> None:
    require_root("containerd runs as root")
    if build == "lab":
        binary, ctr_bin = lab_containerd(tmp_path)
    else:
        binary = require_tool("containerd", "pulls through the mirror")
        ctr_bin = require_tool("ctr", "containerd's client")
    registry_bin = require_tool("docker-registry", "serve-bundle's image side")
    files, imgs, settings = private_source(tmp_path / "src")
    manifest = make_bundle(VERSIONS, settings, tmp_path / "bundle", str(files), str(imgs))
    registry = f"127.0.0.1:{free_port()}"
    digests = {entry["ref"]: entry["digest"] for entry in manifest["images"]}
    pinned = ArtifactSettings(imageRegistry=registry, imageRegistryPlainHttp=True, imageDigests=digests)
    node_images = node_pinned_images(images(VERSIONS), pinned)
    # kubeadm's images, pause and CoreDNS are the node's to pin; the add-ons' manifests name theirs.
    assert {ref.split("/")[-1].split(":")[0] for ref, _ in node_images} == {
        "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "pause", "coredns"}
    table = tmp_path / "image-digests"
    table.write_text("".join(f"{ref} {digest}\n" for ref, digest in node_images))
    hosts = tmp_path / "certs.d"
    for path, content in mirror_hosts(pinned, images(VERSIONS), plain_http=True).items():
        target = hosts / Path(path).relative_to(CERTS_D)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    with (BundleServer(tmp_path / "bundle", "127.0.0.1:0", registry, tmp_path / "state", registry_bin),
          containerd(binary, tmp_path) as sock):
        ctr = [ctr_bin, "--address", sock]
        first = pin(table, hosts, ctr)
        assert first.returncode == 0, first.stderr + (tmp_path / "containerd.log").read_text()[-2000:]
        for ref, digest in node_images:
            assert tag_digest(ctr, ref) == digest
            assert f"pinned {ref} to {digest}" in first.stderr
        again = pin(table, hosts, ctr)
        assert again.returncode == 0 and "pinned" not in again.stderr, again.stderr

        # A registry that moved a tag: the next run puts the pinned content back under it.
        (moved_ref, moved_digest), (other_ref, other_digest) = node_images[0], node_images[1]
        subprocess.run([*ctr, "-n", "k8s.io", "images", "tag", "--force", other_ref, moved_ref], check=True,
                       capture_output=True)
        assert tag_digest(ctr, moved_ref) == other_digest
        back = pin(table, hosts, ctr)
        assert back.returncode == 0, back.stderr
        assert f"pinned {moved_ref} to {moved_digest} (the registry had {other_digest})" in back.stderr
        assert tag_digest(ctr, moved_ref) == moved_digest

        # A digest the mirror does not have: refused, naming the image and the setting.
        absent = "sha256:" + "0" * 64
        table.write_text(f"{moved_ref.rsplit(':', 1)[0]}:v0.0.0 {absent}\n")
        refused = pin(table, hosts, ctr)
        assert refused.returncode != 0
        assert (f"cannot pull {moved_ref.rsplit(':', 1)[0]}@{absent} (artifacts.imageDigests) through {hosts}"
                in refused.stderr), refused.stderr
