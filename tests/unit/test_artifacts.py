"""The pinned artifact list: real upstream layouts, one mirror setting, clear refusals."""

from __future__ import annotations

import pytest

from k8s_ha.model.artifacts import (
    ArtifactError,
    ArtifactSettings,
    ArtifactVersions,
    images,
    release_files,
)
from k8s_ha.model.checksums import RELEASE_SHA256
from k8s_ha.model.errors import SpecError
from k8s_ha.model.spec import parse_stack
from tests.conftest import ROOT

DEFAULT = ArtifactVersions()


def by_component(settings: ArtifactSettings, ver: ArtifactVersions = DEFAULT) -> dict[str, str]:
    return {f.component: f.url for f in release_files(ver, settings)}


def test_default_urls_are_the_releases_real_layout() -> None:
    urls = by_component(ArtifactSettings())
    assert urls["kubeadm"] == f"https://dl.k8s.io/release/v{DEFAULT.kubernetes}/bin/linux/amd64/kubeadm"
    assert urls["containerd"] == (
        f"https://github.com/containerd/containerd/releases/download/v{DEFAULT.containerd}/"
        f"containerd-{DEFAULT.containerd}-linux-amd64.tar.gz"
    )
    assert urls["runc"].endswith(f"/v{DEFAULT.runc}/runc.amd64")
    assert urls["cni-plugins"].endswith(f"/cni-plugins-linux-amd64-v{DEFAULT.cni_plugins}.tgz")
    assert urls["crictl"].endswith(f"/crictl-v{DEFAULT.crictl}-linux-amd64.tar.gz")
    assert urls["etcd"].endswith(f"/v{DEFAULT.etcd}/etcd-v{DEFAULT.etcd}-linux-amd64.tar.gz")


def test_every_file_carries_the_upstream_checksum() -> None:
    for f in release_files(DEFAULT, ArtifactSettings()):
        assert f.sha256 == RELEASE_SHA256[f.component][f.version]


def test_one_files_repo_setting_moves_every_url() -> None:
    settings = ArtifactSettings(filesRepo="http://10.0.0.5:8080/mirror/")
    for f in release_files(DEFAULT, settings):
        assert f.url == f"http://10.0.0.5:8080/mirror/{f.path}"
        assert f.upstream.removeprefix("https://") == f.path


def test_a_version_without_checksum_is_refused_with_what_to_do() -> None:
    with pytest.raises(ArtifactError) as err:
        release_files(ArtifactVersions(kubernetes="1.36.99", crictl="1.37.0"), ArtifactSettings())
    text = str(err.value)
    for expected in ("kubeadm 1.36.99", "kubelet 1.36.99", "crictl 1.37.0", "artifacts.checksums", "checksums.py"):
        assert expected in text


def test_a_stack_table_adds_and_overrides_versions() -> None:
    private = "ab" * 32
    settings = ArtifactSettings(checksums={"crictl": {"1.37.0": private}, "kubeadm": {DEFAULT.kubernetes: private}})
    files = {f.component: f for f in release_files(ArtifactVersions(crictl="1.37.0"), settings)}
    assert files["crictl"].sha256 == private
    assert files["kubeadm"].sha256 == private
    assert files["kubelet"].sha256 == RELEASE_SHA256["kubelet"][DEFAULT.kubernetes]


def test_images_have_kubeadms_names() -> None:
    refs = {i.component: i.ref for i in images(DEFAULT)}
    assert refs["kube-apiserver"] == f"registry.k8s.io/kube-apiserver:v{DEFAULT.kubernetes}"
    assert refs["pause"] == "registry.k8s.io/pause:3.10.2"
    assert refs["coredns"] == "registry.k8s.io/coredns/coredns:v1.14.2"
    custom = {i.component: i for i in images(ArtifactVersions(image_repository="10.0.0.5:5000/k8s"))}
    assert custom["coredns"].ref == "10.0.0.5:5000/k8s/coredns:v1.14.2"  # GetDNSImage: no coredns/ level
    assert custom["kube-proxy"].path == f"k8s/kube-proxy:v{DEFAULT.kubernetes}"


def test_cni_and_metrics_server_images_follow_the_stack() -> None:
    flannel = {i.component for i in images(ArtifactVersions(cni="flannel", metrics_server=True))}
    assert {"flannel", "flannel-cni-plugin", "metrics-server"} <= flannel
    assert not any(c.startswith("calico") for c in flannel)
    calico = {i.component for i in images(DEFAULT)}
    assert {"calico-node", "calico-cni", "calico-kube-controllers"} <= calico
    assert "metrics-server" not in calico


@pytest.mark.parametrize(
    ("artifacts", "path"),
    [
        ({"filesRepo": "ftp://x/"}, "artifacts.filesRepo"),
        ({"imageRegistry": "http://x:5000"}, "artifacts.imageRegistry"),
        ({"checksums": {"kubeadm": {"1.36.4": "XYZ"}}}, "artifacts.checksums"),
        ({"checksums": {"kubeadmm": {"1.36.4": "ab" * 32}}}, "artifacts.checksums"),
        ({"fileRepo": "http://x/"}, "artifacts.fileRepo"),
    ],
)
def test_stack_artifact_settings_are_checked(artifacts: dict[str, object], path: str) -> None:
    import yaml

    config = {k.removeprefix("k8s-ha:"): v for k, v in
              yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"].items()}
    config["artifacts"] = artifacts
    with pytest.raises(SpecError) as err:
        parse_stack(config, frozenset(config))
    assert any(p.path.startswith(path) for p in err.value.problems), err.value.render()


def test_only_some_components_need_only_their_checksums() -> None:
    ver = ArtifactVersions(kubernetes="1.36.99")
    (etcd,) = release_files(ver, ArtifactSettings(), only=frozenset({"etcd"}))
    assert etcd.name == f"etcd-v{ver.etcd}-linux-amd64.tar.gz"
