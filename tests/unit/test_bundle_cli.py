"""`python -m k8s_ha bundle / verify-bundle` as a user runs them, on a stack file whose own
checksum table pins a private build (the versions are whatever the stack resolves to)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from k8s_ha.cli.bundle import versions_of
from k8s_ha.cli.main import main
from k8s_ha.model.artifacts import ArtifactSettings, images, release_files
from k8s_ha.placement.plan import load_plan
from tests.conftest import ROOT
from tests.support.oci import write_layout


def private_stack(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The dev stack plus artifacts.checksums for made-up files of exactly its versions."""
    ver = versions_of(load_plan(ROOT / "Pulumi.dev.yaml").spec)
    files, imgs = tmp_path / "files", tmp_path / "images"
    table: dict[str, dict[str, str]] = {}
    placeholder = ArtifactSettings(checksums={c: {v: "0" * 64} for c, v in (
        ("kubeadm", ver.kubernetes), ("kubelet", ver.kubernetes), ("kubectl", ver.kubernetes),
        ("containerd", ver.containerd), ("runc", ver.runc), ("cni-plugins", ver.cni_plugins),
        ("crictl", ver.crictl), ("etcd", ver.etcd))})
    for f in release_files(ver, placeholder):
        data = f"{f.name} built here\n".encode()
        (files / f.path).parent.mkdir(parents=True, exist_ok=True)
        (files / f.path).write_bytes(data)
        table.setdefault(f.component, {})[f.version] = hashlib.sha256(data).hexdigest()
    for image in images(ver):
        write_layout(imgs / image.upstream_path.replace(":", "/"), image.ref, image.ref.encode())
    document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    document["config"]["k8s-ha:artifacts"] = {"checksums": table}
    stack = tmp_path / "Pulumi.private.yaml"
    stack.write_text(yaml.safe_dump(document))
    return stack, files, imgs


def test_bundle_then_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack, files, imgs = private_stack(tmp_path)
    out = tmp_path / "bundle"
    args = ["bundle", "--stack-file", str(stack), "--out", str(out), "--files-source", str(files),
            "--images-source", str(imgs)]
    assert main(args) == 0
    assert "8 files" in capsys.readouterr().out
    assert main(["verify-bundle", str(out)]) == 0
    kubeadm = next(out.rglob("kubeadm"))
    kubeadm.write_bytes(b"not kubeadm")
    assert main(["verify-bundle", str(out)]) == 1
    assert "refused: kubeadm: sha256" in capsys.readouterr().err


def test_a_corrupt_source_file_fails_the_command_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack, files, imgs = private_stack(tmp_path)
    next(files.rglob("runc.amd64")).write_bytes(b"trojan")
    args = ["bundle", "--stack-file", str(stack), "--out", str(tmp_path / "b"), "--files-source", str(files),
            "--images-source", str(imgs)]
    assert main(args) == 1
    assert "refused: runc.amd64: sha256" in capsys.readouterr().err


def test_an_invalid_stack_exits_2(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.bad.yaml"
    document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    document["config"]["k8s-ha:artifacts"] = {"filesRepo": "not a url"}
    stack.write_text(yaml.safe_dump(document))
    assert main(["bundle", "--stack-file", str(stack), "--out", str(tmp_path / "b")]) == 2
