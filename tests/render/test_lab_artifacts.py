"""What scripts/lab-artifacts built, checked as a node would use it: the release files report the
versions they are named for, the images are linux/amd64 with their entrypoint inside, and the lab
bundle verifies. Each check runs only once its component is built (scripts/test builds them first
where it runs as root), and says so when it skips."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from k8s_ha.cli.bundle import verify_bundle, verify_layout
from k8s_ha.model.artifacts import UPSTREAM, files_path
from tests.support.lab_artifacts import lab_artifacts_dir, lab_versions

ROOT = Path(__file__).resolve().parents[2]
CACHE = lab_artifacts_dir()
FILES = CACHE / "source" / "files"
VER = lab_versions(ROOT / "configs" / "lab-artifacts" / "components.env")


def built(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"not built yet: {path.relative_to(CACHE)} (scripts/lab-artifacts)")
    return path


def release(component: str, version: str) -> Path:
    """The built file in its upstream place (source/files/<host>/<path>)."""
    return built(FILES / files_path(UPSTREAM[component].format(v=version, arch="amd64")))


def run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def unpack(archive: Path, dest: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


@pytest.mark.parametrize("name", ["kubeadm", "kubelet", "kubectl"])
def test_kubernetes_binaries_report_their_release(name: str) -> None:
    binary = release(name, VER.kubernetes)
    args = {"kubeadm": ["version", "-o", "short"], "kubelet": ["--version"], "kubectl": ["version", "--client"]}
    assert f"v{VER.kubernetes}" in run(str(binary), *args[name])


def test_containerd_tarball_has_upstreams_layout_and_version(tmp_path: Path) -> None:
    v = VER.containerd
    out = unpack(release("containerd", v), tmp_path)
    assert {"containerd", "containerd-shim-runc-v2", "ctr"} <= {p.name for p in (out / "bin").iterdir()}
    assert f" v{v} " in run(str(out / "bin" / "containerd"), "--version") + " "
    assert run(str(out / "bin" / "containerd"), "config", "default").startswith("version = ")


def test_etcd_runc_crictl_and_cni_report_their_versions(tmp_path: Path) -> None:
    out = unpack(release("etcd", VER.etcd), tmp_path / "etcd") / f"etcd-v{VER.etcd}-linux-amd64"
    assert VER.etcd in run(str(out / "etcd"), "--version")
    assert VER.etcd in run(str(out / "etcdctl"), "version")
    runc = release("runc", VER.runc)
    assert f"runc version {VER.runc}" in run(str(runc), "--version")
    crictl = release("crictl", VER.crictl)
    assert VER.crictl in run(str(unpack(crictl, tmp_path / "crictl") / "crictl"), "--version")
    plugins = unpack(release("cni-plugins", VER.cni_plugins), tmp_path / "cni")
    assert {"bridge", "loopback", "host-local", "portmap"} <= {p.name for p in plugins.iterdir()}


def test_the_lab_bundle_verifies_and_every_image_is_linux_amd64() -> None:
    bundle = built(CACHE / "bundle" / "manifest.json").parent
    manifest = verify_bundle(bundle)
    assert {e["component"] for e in manifest["images"]} >= {"kube-apiserver", "pause", "coredns", "flannel"}
    for entry in manifest["images"]:
        layout = bundle / entry["layout"]
        digest, _ = verify_layout(layout, entry["ref"])
        blobs = layout / "blobs" / "sha256"
        image = json.loads((blobs / digest.removeprefix("sha256:")).read_text())
        config = json.loads((blobs / image["config"]["digest"].removeprefix("sha256:")).read_text())
        assert (config["os"], config["architecture"]) == ("linux", "amd64")


@pytest.mark.parametrize("repository", ["registry.k8s.io", "10.0.0.5:5000/k8s"])
def test_image_names_are_the_ones_kubeadm_pulls(repository: str) -> None:
    from dataclasses import replace

    from k8s_ha.model.artifacts import images

    kubeadm = release("kubeadm", VER.kubernetes)
    listed = run(str(kubeadm), "config", "images", "list", "--kubernetes-version", f"v{VER.kubernetes}",
                 "--image-repository", repository).splitlines()
    ours = {i.ref for i in images(replace(VER, image_repository=repository))}
    # The cluster's etcd is external (ExternalEtcd), so kubeadm's own etcd image is never pulled.
    assert {ref for ref in listed if "/etcd:" not in ref} <= ours
