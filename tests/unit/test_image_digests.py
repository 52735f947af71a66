"""Images by digest: `artifacts.imageDigests` is checked by `validate` (format, and only images the
cluster pulls), the add-on manifests name pinned images as ref@digest, the nodes get the rest in
their digest table, and `bundle` writes the table for the images it holds."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8s_ha.cli.bundle import STACK_PINS, make_bundle
from k8s_ha.model.artifacts import ArtifactSettings, ArtifactVersions, images
from k8s_ha.model.errors import SpecError
from k8s_ha.model.spec import StackSpec, parse_stack
from k8s_ha.model.stackfile import read_stack_file
from k8s_ha.placement.place import place
from k8s_ha.render import addons as a
from k8s_ha.render import kubernetes as k
from tests.conftest import ROOT
from tests.unit.test_bundle import VERSIONS, private_source

DIGEST = "sha256:" + "ab" * 32


def config_with(**artifacts: Any) -> dict[str, Any]:
    config = copy.deepcopy(read_stack_file(ROOT / "Pulumi.dev.yaml").config)
    config.setdefault("kubernetes", {}).update(cni="flannel", metricsServer=True)
    config["artifacts"] = artifacts
    return config


def pinned_spec() -> StackSpec:
    spec = parse_stack(config_with())
    refs = [i.ref for i in images(spec.artifact_versions())]
    return parse_stack(config_with(imageDigests=dict.fromkeys(refs, DIGEST)))


def problems(config: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_stack(config)
    return [str(p) for p in info.value.problems]


def test_validate_refuses_a_digest_for_an_image_the_cluster_does_not_pull_and_names_the_near_one() -> None:
    found = problems(config_with(imageDigests={"registry.k8s.io/kube-apiserver:v1.36.3": DIGEST,
                                               "example.com/app:1": DIGEST}))
    assert found[0] == ("artifacts.imageDigests: 'registry.k8s.io/kube-apiserver:v1.36.3' is not an image this "
                        "cluster pulls; did you mean 'registry.k8s.io/kube-apiserver:v1.36.4'?")
    assert found[1].startswith("artifacts.imageDigests: 'example.com/app:1' is not an image this cluster pulls; "
                               "its images: registry.k8s.io/kube-apiserver:v1.36.4, ")


def test_validate_refuses_a_digest_that_is_not_one() -> None:
    found = problems(config_with(imageDigests={"registry.k8s.io/pause:3.10.2": "sha256:ABC"}))
    assert found == ["artifacts.imageDigests: registry.k8s.io/pause:3.10.2: 'sha256:ABC' is not a digest such as "
                     "sha256:<64 lowercase hex digits>"]


def test_add_on_manifests_name_pinned_images_by_digest() -> None:
    spec = pinned_spec()
    flannel = a.flannel_objects(spec)
    pod = next(o for o in flannel if o["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    assert {c["image"] for c in pod["containers"] + pod["initContainers"]} == {
        f"ghcr.io/flannel-io/flannel:v0.28.4@{DIGEST}",
        f"ghcr.io/flannel-io/flannel-cni-plugin:v1.9.0-flannel1@{DIGEST}"}
    deployment = next(o for o in a.metrics_server_objects(spec) if o["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"registry.k8s.io/metrics-server/metrics-server:v0.8.0@{DIGEST}"
    unpinned = parse_stack(config_with())
    deployment = next(o for o in a.metrics_server_objects(unpinned) if o["kind"] == "Deployment")
    assert "@" not in deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def test_the_nodes_pin_kubeadms_images_pause_and_coredns_and_nothing_when_unpinned() -> None:
    spec = pinned_spec()
    config = k.kubernetes_config(spec, place(spec))
    table = [line.split() for line in k.image_digests_file(config).splitlines()]
    assert [ref.split("/")[-1].split(":")[0] for ref, _ in table] == [
        "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "pause", "coredns"]
    assert {digest for _, digest in table} == {DIGEST}
    plain = parse_stack(config_with())
    assert k.image_digests_file(k.kubernetes_config(plain, place(plain))) == ""


def test_bundle_writes_the_stacks_pins_for_what_it_holds(tmp_path: Path) -> None:
    files, imgs, settings = private_source(tmp_path / "src")
    manifest = make_bundle(VERSIONS, settings, tmp_path / "out", str(files), str(imgs))
    pins = yaml.safe_load((tmp_path / "out" / STACK_PINS).read_text())
    assert pins["imageDigests"] == {e["ref"]: e["digest"] for e in manifest["images"]}
    assert pins["checksums"] == manifest["checksums"]
    artifacts = ArtifactSettings.model_validate(pins)  # pastes into the stack as it is
    assert set(artifacts.image_digests) == {i.ref for i in images(ArtifactVersions(**VERSIONS.__dict__))}
