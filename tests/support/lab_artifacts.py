"""The lab's private build as a stack sees it (run by scripts/lab-artifacts): the checksum table of
the files built here, a stack file that pins it, the bundles made through the product's own
`bundle` command from the local source (`bundle`: the lab's Kubernetes version; `bundle-from`: the
version the cluster tier's rolling upgrade starts from), and the build times in
bench/results/artifacts.json.

    python -m tests.support.lab_artifacts CACHE_DIR [--times-only]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from k8s_ha.cli.bundle import sha256_file, stack_pins
from k8s_ha.cli.main import main as cli
from k8s_ha.model.artifacts import UPSTREAM, ArtifactVersions, files_path

ROOT = Path(__file__).resolve().parents[2]
BASE_STACK = ROOT / "Pulumi.dev.yaml"
COMPONENTS = ROOT / "configs" / "lab-artifacts" / "components.env"
UPGRADE_FROM_BUNDLE = "bundle-from"


def lab_artifacts_dir() -> Path:
    """Where scripts/lab-artifacts builds: beside Go's own caches (outside the checkout), so every
    clone and every run on one machine reuses one build; K8SHA_LAB_ARTIFACTS overrides it."""
    if os.environ.get("K8SHA_LAB_ARTIFACTS"):
        return Path(os.environ["K8SHA_LAB_ARTIFACTS"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "k8s-ha" / "lab-artifacts"


def missing_artifacts(cache: Path | None = None) -> str | None:
    """Why the lab artifacts cannot be used, or None."""
    cache = cache or lab_artifacts_dir()
    for need in ("bundle/manifest.json", f"{UPGRADE_FROM_BUNDLE}/manifest.json", "source/checksums.json"):
        if not (cache / need).is_file():
            return f"the lab artifacts are not built ({cache / need} is missing): run scripts/lab-artifacts"
    if not list((cache / "source" / "images" / "e2e-test-images" / "agnhost").glob("*/index.json")):
        return "the agnhost test image is not built: run scripts/lab-artifacts images"
    if not lab_binary(cache, "kubectl").is_file():
        return "no kubectl in the lab artifacts: run scripts/lab-artifacts kubernetes"
    return None


def lab_binary(cache: Path, name: str, upgrade_from: bool = False) -> Path:
    """kubeadm, kubelet or kubectl as scripts/lab-artifacts built it, of the lab's version (or of
    the version the rolling upgrade starts from)."""
    return cache / "bin" / f"kubernetes-{lab_versions(upgrade_from=upgrade_from).kubernetes}" / name


def lab_pins(cache: Path, bundle: str = "bundle") -> dict[str, Any]:
    """A lab bundle's `artifacts` pins (checksums, imageDigests), as the product's `bundle` writes
    them for a stack (from the manifest: a bundle cached before that file existed has it too)."""
    pins: dict[str, Any] = yaml.safe_load(stack_pins(json.loads((cache / bundle / "manifest.json").read_text())))
    return pins


def lab_versions(env: Path = COMPONENTS, upgrade_from: bool = False) -> ArtifactVersions:
    """The versions configs/lab-artifacts/components.env builds; with `upgrade_from`, those of the
    cluster the rolling upgrade starts from (only Kubernetes differs)."""
    values = dict(line.split("=", 1) for line in env.read_text().splitlines() if line and not line.startswith("#"))
    return ArtifactVersions(
        kubernetes=values["KUBERNETES_UPGRADE_FROM" if upgrade_from else "KUBERNETES_VERSION"],
        containerd=values["CONTAINERD_VERSION"],
        runc=values["RUNC_VERSION"], cni_plugins=values["CNI_PLUGINS_VERSION"],
        crictl=values["CRICTL_VERSION"], etcd=values["ETCD_VERSION"], cni="flannel", metrics_server=True,
    )


def private_table(files: Path, ver: ArtifactVersions) -> dict[str, dict[str, str]]:
    """sha256 of each file the lab built, by component and version (artifacts.checksums)."""
    wanted = {"kubeadm": ver.kubernetes, "kubelet": ver.kubernetes, "kubectl": ver.kubernetes,
              "containerd": ver.containerd, "runc": ver.runc, "cni-plugins": ver.cni_plugins,
              "crictl": ver.crictl, "etcd": ver.etcd}
    table: dict[str, dict[str, str]] = {}
    for component, version in wanted.items():
        path = files / files_path(UPSTREAM[component].format(v=version, arch="amd64"))
        if path.is_file():
            table[component] = {version: sha256_file(path)}
    return table


def lab_stack(ver: ArtifactVersions, table: dict[str, dict[str, str]], out: Path) -> Path:
    """The dev stack with the lab's versions, flannel, metrics-server and the private table."""
    document = yaml.safe_load(BASE_STACK.read_text())
    config = document["config"]
    config["k8s-ha:versions"] = {"kubernetes": ver.kubernetes, "containerd": ver.containerd, "runc": ver.runc,
                                 "cniPlugins": ver.cni_plugins, "crictl": ver.crictl, "etcd": ver.etcd}
    config.setdefault("k8s-ha:kubernetes", {}).update({"cni": "flannel", "metricsServer": True})
    config["k8s-ha:artifacts"] = {"checksums": table}
    out.write_text(yaml.safe_dump(document, sort_keys=False))
    return out


def build_times(directory: Path) -> list[dict[str, Any]]:
    """The `{"component", "seconds"}` records scripts/lab-artifacts wrote, by component."""
    return sorted((json.loads(p.read_text()) for p in directory.glob("*.json")), key=lambda t: str(t["component"]))


def same_builds(recorded: Path, result: dict[str, Any]) -> bool:
    """Whether `recorded` holds the same builds and bundle as `result`, the bundle's own timing
    (which differs on every run) aside."""
    try:
        before = json.loads(recorded.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return {k: v for k, v in before.items() if k != "bundle_seconds"} == {
        k: v for k, v in result.items() if k != "bundle_seconds"}


def main(cache: Path, times_only: bool = False) -> int:
    """Make the lab bundle (unless `times_only`: then only record the builds done so far)."""
    code, bundle_s, from_code = -1, 0.0, -1
    if not times_only:
        source = cache / "source"
        tables = {}
        for upgrade_from, out in ((False, "bundle"), (True, UPGRADE_FROM_BUNDLE)):
            ver = lab_versions(upgrade_from=upgrade_from)
            table = tables[out] = private_table(source / "files", ver)
            stack = lab_stack(ver, table, cache / ("Pulumi.lab-from.yaml" if upgrade_from else "Pulumi.lab.yaml"))
            t0 = time.monotonic()
            done = cli(["bundle", "--stack-file", str(stack), "--out", str(cache / out),
                        "--files-source", str(source / "files"), "--images-source", str(source / "images")])
            if upgrade_from:
                from_code = done
            else:
                code, bundle_s = done, time.monotonic() - t0
        (source / "checksums.json").write_text(json.dumps(tables["bundle"], indent=2) + "\n")
    times, parts = build_times(cache / "times"), build_times(cache / "times" / "parts")
    result: dict[str, Any] = {"builds": times, "kubernetes_binaries": parts,
                              "build_seconds_total": sum(int(t["seconds"]) for t in times),
                              "bundle_exit": code if not times_only else "not run",
                              "upgrade_from_bundle_exit": from_code if not times_only else "not run",
                              "bundle_seconds": round(bundle_s, 1)}
    manifest_file = cache / "bundle" / "manifest.json"
    if code == 0 and manifest_file.is_file():
        manifest = json.loads(manifest_file.read_text())
        result["bundle_files"] = {e["name"]: e["size"] for e in manifest["files"]}
        result["bundle_images"] = {e["ref"]: e["size"] for e in manifest["images"]}
        result["bundle_bytes"] = sum(result["bundle_files"].values()) + sum(result["bundle_images"].values())
    out = ROOT / "bench" / "results" / "artifacts.json"
    if not same_builds(out, result):  # a run that built nothing leaves the recorded figures alone
        out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("bundle_") or k == "bundle_bytes"}, indent=2))
    return max(code, from_code, 0)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), "--times-only" in sys.argv[2:]))
