"""Add-on manifests through `kubernetes-validate --strict` for the stack's Kubernetes minor, the
CoreDNS patch merged onto the fields kubeadm's Deployment has, and Calico's Installation through
a strict schema written from the Tigera operator's API types (no validator ships a schema for it)."""

from __future__ import annotations

import copy
import functools
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate.utils import all_versions  # type: ignore[import-untyped]

from k8s_ha.model.spec import StackSpec
from k8s_ha.render import addons as a
from k8s_ha.render.kubernetes import kubernetes_version
from tests.conftest import EXAMPLE_STACKS, load_example
from tests.render.conftest import run, write

pytestmark = pytest.mark.render

BUILTIN_GROUPS = re.compile(r"^(v1|apps/v1|policy/v1|rbac\.authorization\.k8s\.io/v1|apiregistration\.k8s\.io/v1)$")


def schema_version(minor: int) -> str:
    """The kubernetes-validate schema set for a Kubernetes minor: the same minor when the tool
    ships it (1.25 to 1.37 in kubernetes-validate 1.37, which covers every supported 1.35-1.37),
    else the nearest one it has."""
    shipped = sorted({tuple(int(x) for x in v.split(".")[:2]) for v in all_versions()})
    best = min(shipped, key=lambda v: (abs(v[1] - minor), -v[1]))
    return f"{best[0]}.{best[1]}.0"


def _validator() -> str:
    path = shutil.which("kubernetes-validate") or str(Path(sys.executable).with_name("kubernetes-validate"))
    if not Path(path).exists():
        pytest.fail("kubernetes-validate is not installed in the test environment (pip install kubernetes-validate)")
    return path


def validate_strict(objects: list[dict[str, Any]], minor: int, tmp_path: Path) -> None:
    """Every object through `kubernetes-validate --strict` (one run for all): each must pass."""
    manifest = write(tmp_path / "manifest.yaml", yaml.safe_dump_all(objects, sort_keys=False))
    result = run([_validator(), "--strict", "-k", schema_version(minor), str(manifest)])
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert report.count(" passed for resource ") == len(objects), report


@functools.cache
def _spec(name: str) -> StackSpec:
    return load_example(name)[0]


def _with_kubernetes(spec: StackSpec, **changes: Any) -> StackSpec:
    return spec.model_copy(update={"kubernetes": spec.kubernetes.model_copy(update=changes)})


def _with_version(spec: StackSpec, version: str) -> StackSpec:
    return spec.model_copy(update={"versions": spec.versions.model_copy(update={"kubernetes": version})})


def _full(spec: StackSpec) -> StackSpec:
    """Every add-on on: metrics-server and three CoreDNS replicas."""
    return _with_kubernetes(spec, metrics_server=True, coredns_replicas=3)


# ---- manifests through the real validator ---------------------------------------------------------


@pytest.mark.parametrize("name", EXAMPLE_STACKS)
@pytest.mark.parametrize("cni", ["flannel", "calico"])
def test_every_builtin_manifest_passes_kubernetes_validate_strict(name: str, cni: str, tmp_path: Path) -> None:
    spec = _full(_with_kubernetes(_spec(name), cni=cni))
    addons = a.cluster_addons(spec)
    builtin = [o for o in addons.objects if BUILTIN_GROUPS.match(o["apiVersion"])]
    custom = [o for o in addons.objects if not BUILTIN_GROUPS.match(o["apiVersion"])]
    assert [o["kind"] for o in custom] == ([] if cni == "flannel" else ["Installation"])
    validate_strict(builtin, kubernetes_version(spec.versions.kubernetes).minor, tmp_path)


# The fields kubeadm's CoreDNS Deployment has that our patch does not set; the patch is merged
# onto them so the validator sees a whole Deployment, and strict mode rejects any unknown field
# the patch adds.
COREDNS_SKELETON = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "coredns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
    "spec": {
        "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
        "template": {
            "metadata": {"labels": {"k8s-app": "kube-dns"}},
            "spec": {"containers": [{"name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.11.3"}]},
        },
    },
}


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.mark.parametrize("version", ["1.35.8", "1.36.4", "1.37.2"])
def test_coredns_patch_is_valid_on_kubeadms_deployment(version: str, tmp_path: Path) -> None:
    spec = _with_version(_full(_spec("Pulumi.prod.yaml")), version)
    patches = a.coredns_patches(spec)
    assert [(p["kind"], p["metadata"]["name"], p["metadata"]["namespace"]) for p in patches] == [
        ("Deployment", "coredns", "kube-system")
    ]
    minor = kubernetes_version(spec.versions.kubernetes).minor
    validate_strict([merge(COREDNS_SKELETON, p) for p in patches], minor, tmp_path)


def test_the_validator_rejects_a_wrong_manifest(tmp_path: Path) -> None:
    spec = _full(_spec("Pulumi.dev.yaml"))
    deployment = next(o for o in a.metrics_server_objects(spec) if o["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["topologySpreadConstraint"] = []  # misspelt
    with pytest.raises(AssertionError):
        validate_strict([broken], 36, tmp_path)
    constraint = {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
                  "nodeTaintPolicy": "Honor"}  # misspelt: nodeTaintsPolicy
    typo = merge(COREDNS_SKELETON, {"spec": {"template": {"spec": {"topologySpreadConstraints": [constraint]}}}})
    with pytest.raises(AssertionError):
        validate_strict([typo], 36, tmp_path)


@pytest.mark.parametrize(("minor", "expected"), [
    (35, "1.35.0"), (36, "1.36.0"), (37, "1.37.0"), (19, "1.25.0"), (99, "1.37.0"),
])
def test_schema_version_choice(minor: int, expected: str) -> None:
    shipped = {".".join(v.split(".")[:2]) for v in all_versions()}
    if expected.rpartition(".")[0] not in shipped:
        pytest.skip(f"this kubernetes-validate does not ship {expected}")
    assert schema_version(minor) == expected


# ---- Calico's Installation: a strict schema from the operator's API (operator.tigera.io/v1) ---------

_ENABLED = {"enum": ["Enabled", "Disabled"]}
INSTALLATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "operator.tigera.io/v1"},
        "kind": {"const": "Installation"},
        # The operator acts only on the Installation named "default".
        "metadata": {"type": "object", "additionalProperties": False, "properties": {"name": {"const": "default"}},
                     "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "registry": {"type": "string", "pattern": "/$"},
                "calicoNetwork": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "bgp": _ENABLED,
                        "ipPools": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["cidr"],
                            "properties": {
                                "cidr": {"type": "string", "pattern": r"^\d+\.\d+\.\d+\.\d+/\d+$"},
                                "blockSize": {"type": "integer", "minimum": 20, "maximum": 32},
                                "encapsulation": {"enum": [
                                    "IPIPCrossSubnet", "IPIP", "VXLAN", "VXLANCrossSubnet", "None"]},
                                "natOutgoing": _ENABLED,
                                "nodeSelector": {"type": "string"},
                            },
                        }},
                        "nodeAddressAutodetectionV4": {
                            "type": "object",
                            "additionalProperties": False,
                            "minProperties": 1,
                            "maxProperties": 1,  # "At most one option can be used"
                            "properties": {
                                "firstFound": {"type": "boolean"},
                                "kubernetes": {"enum": ["NodeInternalIP"]},
                                "interface": {"type": "string"},
                                "skipInterface": {"type": "string"},
                                "canReach": {"type": "string"},
                                "cidrs": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                    },
                },
            },
        },
    },
}


@pytest.mark.parametrize("name", EXAMPLE_STACKS)
def test_calico_installation_matches_the_operator_api(name: str) -> None:
    spec = _spec(name)
    (installation,) = a.calico_objects(spec)
    jsonschema.validate(installation, INSTALLATION_SCHEMA)
    pool = installation["spec"]["calicoNetwork"]["ipPools"][0]
    assert pool["cidr"] == str(spec.kubernetes.pod_cidr)
    assert pool["blockSize"] == 26
    assert "registry" not in installation["spec"]
    mirrored = a.calico_objects(spec, a.AddonSources(calico_registry="harbor.example.com/quay"))[0]
    jsonschema.validate(mirrored, INSTALLATION_SCHEMA)
    assert mirrored["spec"]["registry"] == "harbor.example.com/quay/"


def test_the_installation_schema_rejects_a_wrong_field() -> None:
    (installation,) = a.calico_objects(_spec("Pulumi.prod.yaml"))
    broken = copy.deepcopy(installation)
    broken["spec"]["calicoNetwork"]["ipPools"][0]["encapsulation"] = "VXLANCrosssubnet"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, INSTALLATION_SCHEMA)


def test_calico_manifest_urls_are_versioned_and_ordered() -> None:
    urls = a.calico_manifests(a.AddonSources(calico_version="v3.30.2"))
    assert urls == [
        "https://raw.githubusercontent.com/projectcalico/calico/v3.30.2/manifests/operator-crds.yaml",
        "https://raw.githubusercontent.com/projectcalico/calico/v3.30.2/manifests/tigera-operator.yaml",
    ]
    mirror = a.AddonSources(calico_manifests=("https://mirror.example/calico/{version}/tigera-operator.yaml",))
    assert a.calico_manifests(mirror) == ["https://mirror.example/calico/v3.31.3/tigera-operator.yaml"]


# ---- content ------------------------------------------------------------------------------------


def _by(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


@pytest.mark.parametrize("name", EXAMPLE_STACKS)
def test_flannel_uses_the_pod_cidr_and_the_configured_repository(name: str) -> None:
    spec = _spec(name)
    objects = a.flannel_objects(spec, a.AddonSources(flannel_repository="harbor.local/flannel/"))
    config = _by(objects, "ConfigMap", "kube-flannel-cfg")
    net_conf = yaml.safe_load(config["data"]["net-conf.json"])
    assert net_conf["Network"] == str(spec.kubernetes.pod_cidr)
    assert net_conf["Backend"] == {"Type": "vxlan"}
    assert yaml.safe_load(config["data"]["cni-conf.json"])["plugins"][0]["type"] == "flannel"
    pod = _by(objects, "DaemonSet", "kube-flannel-ds")["spec"]["template"]["spec"]
    images = {c["image"] for c in pod["containers"] + pod["initContainers"]}
    assert images == {"harbor.local/flannel/flannel:v0.28.4", "harbor.local/flannel/flannel-cni-plugin:v1.9.0-flannel1"}
    namespace = _by(objects, "Namespace", "kube-flannel")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_coredns_keeps_one_up_and_spreads_its_replicas() -> None:
    spec = _with_kubernetes(_spec("Pulumi.prod.yaml"), coredns_replicas=4)
    (pdb,) = a.coredns_objects(spec)
    assert pdb["kind"] == "PodDisruptionBudget"
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    (patch,) = a.coredns_patches(spec)
    assert patch["spec"]["replicas"] == 4
    assert patch["metadata"]["annotations"]["pulumi.com/patchForce"] == "true"
    spread = {c["topologyKey"]: c for c in patch["spec"]["template"]["spec"]["topologySpreadConstraints"]}
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert spread["kubernetes.io/hostname"]["maxSkew"] == 1
    assert spread["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"
    for constraint in spread.values():
        assert constraint["labelSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}


def test_metrics_server_image_follows_the_image_repository() -> None:
    prod, staging = _spec("Pulumi.prod.yaml"), _spec("Pulumi.staging.yaml")
    assert a.metrics_server_image(prod) == "registry.k8s.io/metrics-server/metrics-server:v0.8.0"
    assert a.metrics_server_image(staging) == "registry.aliyuncs.com/google_containers/metrics-server:v0.8.0"
    objects = a.metrics_server_objects(staging)
    deployment = _by(objects, "Deployment", "metrics-server")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == a.metrics_server_image(staging)
    assert "--kubelet-insecure-tls" in container["args"]
    assert deployment["spec"]["replicas"] == 2
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(["ServiceAccount", "ClusterRole", "ClusterRole", "RoleBinding", "ClusterRoleBinding",
                            "ClusterRoleBinding", "Service", "Deployment", "PodDisruptionBudget", "APIService"])
    api = _by(objects, "APIService", "v1beta1.metrics.k8s.io")
    assert api["spec"]["service"] == {"name": "metrics-server", "namespace": "kube-system"}
    secure = a.metrics_server_objects(staging, a.AddonSources(metrics_server_kubelet_insecure_tls=False))
    (verified,) = _by(secure, "Deployment", "metrics-server")["spec"]["template"]["spec"]["containers"]
    assert "--kubelet-insecure-tls" not in verified["args"]


@pytest.mark.parametrize("name", EXAMPLE_STACKS)
def test_cluster_addons_follow_the_spec(name: str) -> None:
    spec = _spec(name)
    addons = a.cluster_addons(spec)
    kinds = [o["kind"] for o in addons.objects]
    if spec.kubernetes.cni == "flannel":
        assert addons.manifests == [] and "DaemonSet" in kinds and "Installation" not in kinds
    else:
        assert len(addons.manifests) == 2 and kinds[0] == "Installation"
    assert ("APIService" in kinds) == spec.kubernetes.metrics_server
    assert "PodDisruptionBudget" in kinds
    assert addons.patches == a.coredns_patches(spec)
    assert "APIService" in [o["kind"] for o in a.cluster_addons(_full(spec)).objects]


@pytest.mark.parametrize("cni", ["flannel", "calico"])
def test_every_image_the_addons_pull_is_one_the_bundle_exports(cni: str) -> None:
    """An air-gapped site serves exactly `bundle`'s images: an add-on that pulls another tag never
    starts there (found on the first real cluster: flannel v0.26.3 from docker.io against the
    bundle's ghcr.io v0.28.4)."""
    from k8s_ha.model.artifacts import ArtifactVersions, images

    spec = _with_kubernetes(_spec("Pulumi.prod.yaml"), cni=cni, metrics_server=True)
    exported = {i.ref for i in images(ArtifactVersions(cni=cni, metrics_server=True))}
    addons = a.cluster_addons(spec)
    pulled = set()
    for obj in addons.objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        pulled |= {c["image"] for c in pod.get("containers", []) + pod.get("initContainers", [])}
    if cni == "calico":  # Calico's operator pulls its images at the tag of the manifests it came from
        from k8s_ha.model.artifacts import CALICO_TAG

        assert all(f"/{CALICO_TAG}/" in url for url in addons.manifests), addons.manifests
    assert pulled, "no add-on image found"
    assert pulled <= exported, sorted(pulled - exported)
