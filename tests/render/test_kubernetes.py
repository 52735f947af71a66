"""Kubernetes node renderers: kubeadm configs against the strict model, containerd's config through
`containerd config dump`, certs.d hosts.toml files, step bundles through bash -n and shellcheck."""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import http.server
import io
import os
import re
import subprocess
import tarfile
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from k8s_ha.model.artifacts import HARBOR_PROXY_PROJECTS, ArtifactSettings, ArtifactVersions, images, release_files
from k8s_ha.model.checksums import RELEASE_SHA256
from k8s_ha.model.spec import Role, StackSpec
from k8s_ha.placement.place import PlacedNode, Placement, place
from k8s_ha.render import kubernetes as k
from k8s_ha.render import material as m
from k8s_ha.render.kubeadm_model import KubeadmConfigError, validate_config, validate_document
from k8s_ha.render.steps import HostFile, Step, bundle
from k8s_ha.render.templating import CONFIGS
from tests.conftest import EXAMPLE_STACKS, load_example
from tests.render.conftest import assert_ok, run, write
from tests.support.material import generate
from tests.tools import containerd2, require_tool

pytestmark = pytest.mark.render

Case = tuple[StackSpec, Placement, dict[str, str]]


@functools.cache
def _stack(name: str) -> Case:
    spec, placement = load_example(name)
    return spec, placement, generate(spec, placement)


def _with(spec: StackSpec, **changes: Any) -> StackSpec:
    """A copy of `spec` with nested fields replaced: _with(spec, versions={"kubernetes": "1.35.8"}).
    A release the upstream table does not pin (Kubernetes 1.37, containerd 1.7.28) gets a private
    checksum, as a stack on it needs (artifacts.checksums; a Kubernetes config refuses it otherwise):
    these tests render configuration, not downloads."""
    updates = {key: getattr(spec, key).model_copy(update=value) for key, value in changes.items()}
    changed = spec.model_copy(update=updates)
    v = changed.versions
    wanted = {"kubeadm": v.kubernetes, "kubelet": v.kubernetes, "kubectl": v.kubernetes, "containerd": v.containerd,
              "runc": v.runc, "cni-plugins": v.cni_plugins, "crictl": v.crictl}
    private = {component: {version.removeprefix("v"): "0" * 64} for component, version in wanted.items()
               if version.removeprefix("v") not in RELEASE_SHA256.get(component, {})}
    if private:
        artifacts = changed.artifacts.model_copy(update={"checksums": {**changed.artifacts.checksums, **private}})
        changed = changed.model_copy(update={"artifacts": artifacts})
    return changed


def _config(spec: StackSpec, placement: Placement | None = None) -> k.KubernetesConfig:
    """The Kubernetes config of `spec` as placed (placed anew when no placement is given)."""
    return k.kubernetes_config(spec, place(spec) if placement is None else placement)


def _cp(placement: Placement) -> list[PlacedNode]:
    return placement.by_role(Role.CONTROL_PLANE)


def _worker(placement: Placement) -> PlacedNode:
    return placement.by_role(Role.WORKER)[0]


def _file(step: Step, path: str) -> HostFile:
    return next(f for f in step.files if f.path == path)


# Every example stack, at its own version and at the ends of the supported window.
VERSIONS = [None, "1.35.8", "1.37.2"]


@pytest.fixture(params=[(s, v) for s in EXAMPLE_STACKS for v in VERSIONS], ids=lambda p: f"{p[0]}-{p[1] or 'own'}")
def case(request: pytest.FixtureRequest) -> Case:
    name, version = request.param
    spec, placement, material = _stack(name)
    if version is not None:
        spec = _with(spec, versions={"kubernetes": version})
    return spec, placement, material


# ---- kubeadm configuration ----------------------------------------------------------------------


def test_every_kubeadm_document_validates_against_the_model_of_its_api_version(case: Case) -> None:
    spec, placement, material = case
    api = k.kubeadm_api_version(_config(spec, placement))
    first, *others = _cp(placement)
    config = _config(spec, placement)
    init = validate_config(k.kubeadm_init_config(config, first, material), api_version=api, command="init")
    kinds = [getattr(d, "kind", None) for d in init]
    assert kinds == ["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"]
    for node in others:
        validate_config(k.kubeadm_join_config(_config(spec, placement), node, material, control_plane=True),
                        api_version=api, command="join")
    for node in placement.by_role(Role.WORKER):
        validate_config(k.kubeadm_join_config(_config(spec, placement), node, material, control_plane=False),
                        api_version=api, command="join")


def _real_kubeadm() -> Path:
    """kubeadm as built by scripts/lab-artifacts (the product's version): the render tier's real
    validator for kubeadm configs. Skips, saying so, until it is built."""
    from tests.support.lab_artifacts import lab_artifacts_dir, lab_binary

    kubeadm = lab_binary(lab_artifacts_dir(), "kubeadm")
    if not kubeadm.is_file():
        message = f"kubeadm is not built in {lab_artifacts_dir()} (scripts/lab-artifacts kubernetes)"
        if os.environ.get("K8SHA_REAL_KUBEADM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return kubeadm


def _node_container_stack() -> Case:
    """The prod stack as a site with cgroup v1 hosts and system-container nodes would set it."""
    spec, placement, material = _stack("Pulumi.prod.yaml")
    return _with(spec, kubernetes={"allow_cgroup_v1": True, "system_container_nodes": True}), placement, material


@pytest.mark.parametrize("name", [*EXAMPLE_STACKS, "node-containers"])
def test_real_kubeadm_accepts_every_rendered_config(name: str, tmp_path: Path) -> None:
    """`kubeadm config validate` of the version the lab builds, on init and both kinds of join."""
    kubeadm = _real_kubeadm()
    spec, placement, material = _node_container_stack() if name == "node-containers" else _stack(name)
    config = _config(spec, placement)
    first, *others = _cp(placement)
    texts = {"init": k.kubeadm_init_config(config, first, material),
             "join-master": k.kubeadm_join_config(config, others[0], material, control_plane=True),
             "join-worker": k.kubeadm_join_config(config, _worker(placement), material, control_plane=False)}
    for kind, text in texts.items():
        path = write(tmp_path / f"{kind}.yaml", text)
        done = subprocess.run([str(kubeadm), "config", "validate", "--config", str(path)], capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{name} {kind}: {done.stderr.strip()}"


def test_real_kubeadm_rejects_a_broken_config(tmp_path: Path) -> None:
    """The validator can fail: an unknown field in the ClusterConfiguration is refused."""
    kubeadm = _real_kubeadm()
    spec, placement, material = _stack("Pulumi.dev.yaml")
    text = k.kubeadm_init_config(_config(spec, placement), _cp(placement)[0], material)
    broken = text.replace("kind: ClusterConfiguration\n", "kind: ClusterConfiguration\nnotAField: 1\n")
    assert broken != text
    done = subprocess.run([str(kubeadm), "config", "validate", "--config", str(write(tmp_path / "x.yaml", broken))],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "notAField" in done.stderr, done.stderr


def test_cgroup_v1_and_system_container_settings_render_where_kubeadm_reads_them() -> None:
    spec, placement, material = _node_container_stack()
    config = _config(spec, placement)
    init, _cluster, kubelet, proxy = yaml.safe_load_all(k.kubeadm_init_config(config, _cp(placement)[0], material))
    assert init["nodeRegistration"]["ignorePreflightErrors"] == ["SystemVerification"]
    assert kubelet["failCgroupV1"] is False
    assert proxy == {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
                     "conntrack": {"maxPerCore": 0}}
    join = yaml.safe_load(k.kubeadm_join_config(config, _worker(placement), material, control_plane=False))
    assert join["nodeRegistration"]["ignorePreflightErrors"] == ["SystemVerification"]
    assert "restrict_oom_score_adj = true" in k.containerd_config(config)
    plain = _config(_stack("Pulumi.prod.yaml")[0], placement)
    assert "restrict_oom_score_adj" not in k.containerd_config(plain)
    docs = list(yaml.safe_load_all(k.kubeadm_init_config(plain, _cp(placement)[0], material)))
    assert len(docs) == 3 and "failCgroupV1" not in docs[2]
    assert "ignorePreflightErrors" not in docs[0]["nodeRegistration"]


@pytest.mark.parametrize(("version", "api"), [
    ("1.35.8", "kubeadm.k8s.io/v1beta4"), ("1.36.4", "kubeadm.k8s.io/v1beta4"), ("v1.37.2", "kubeadm.k8s.io/v1beta4"),
])
def test_api_version_follows_the_kubernetes_minor(version: str, api: str) -> None:
    spec, placement, material = _stack("Pulumi.dev.yaml")
    spec = _with(spec, versions={"kubernetes": version})
    assert k.kubeadm_api_version(_config(spec, placement)) == api
    docs = list(yaml.safe_load_all(k.kubeadm_init_config(_config(spec, placement), _cp(placement)[0], material)))
    assert {d["apiVersion"] for d in docs if d["kind"] != "KubeletConfiguration"} == {api}
    assert docs[1]["kubernetesVersion"] == "v" + version.removeprefix("v")


def _init_docs(version: str) -> list[dict[str, Any]]:
    spec, placement, material = _stack("Pulumi.prod.yaml")
    spec = _with(spec, versions={"kubernetes": version})
    return list(yaml.safe_load_all(k.kubeadm_init_config(_config(spec, placement), _cp(placement)[0], material)))


def _break_v1beta4_timeouts(docs: list[dict[str, Any]]) -> None:
    docs[1]["apiServer"]["timeoutForControlPlane"] = "4m0s"  # v1beta3's, gone from v1beta4


def _break_v1beta4_args(docs: list[dict[str, Any]]) -> None:
    docs[1]["controllerManager"]["extraArgs"] = {"leader-elect": "true"}  # v1beta3's map shape


def _old_api_version(docs: list[dict[str, Any]]) -> None:
    docs[0]["apiVersion"] = "kubeadm.k8s.io/v1beta3"


def _misspell(docs: list[dict[str, Any]]) -> None:
    docs[1]["controlPlaneEndPoint"] = docs[1].pop("controlPlaneEndpoint")


def _bad_token(docs: list[dict[str, Any]]) -> None:
    docs[0]["bootstrapTokens"][0]["token"] = "not-a-token"


def _bad_port(docs: list[dict[str, Any]]) -> None:
    docs[0]["localAPIEndpoint"]["bindPort"] = "6443"


def _stacked_etcd(docs: list[dict[str, Any]]) -> None:
    docs[1]["etcd"] = {"local": {"dataDir": "/var/lib/etcd"}}


def _wrong_cgroup_driver(docs: list[dict[str, Any]]) -> None:
    docs[2]["cgroupDriver"] = "cgroupfs"


@pytest.mark.parametrize(("version", "breaker"), [
    ("1.36.4", _break_v1beta4_timeouts), ("1.36.4", _break_v1beta4_args), ("1.35.8", _old_api_version),
    ("1.36.4", _misspell), ("1.35.8", _bad_token), ("1.37.2", _bad_port),
    ("1.36.4", _stacked_etcd), ("1.37.2", _wrong_cgroup_driver),
])
def test_the_model_rejects_a_wrong_document(version: str, breaker: Any) -> None:
    docs = _init_docs(version)
    for doc in docs:  # the unbroken documents pass
        validate_document(doc)
    broken = copy.deepcopy(docs)
    breaker(broken)
    with pytest.raises((ValidationError, KubeadmConfigError)):
        for doc in broken:
            validate_document(doc)


def test_the_file_checks_reject_wrong_kinds_and_mixed_versions() -> None:
    spec, placement, material = _stack("Pulumi.prod.yaml")
    text = k.kubeadm_init_config(_config(spec, placement), _cp(placement)[0], material)
    with pytest.raises(KubeadmConfigError, match="expected"):
        validate_config(text, api_version=k.kubeadm_api_version(_config(spec, placement)), command="join")
    with pytest.raises(KubeadmConfigError, match=r"not kubeadm\.k8s\.io/v1beta3"):
        validate_config(text, api_version="kubeadm.k8s.io/v1beta3", command="init")
    docs = list(yaml.safe_load_all(text))
    docs[1]["apiVersion"] = "kubeadm.k8s.io/v1beta2"
    with pytest.raises(KubeadmConfigError, match="unexpected apiVersion"):
        validate_document(docs[1])


def test_joins_carry_the_programs_token_hash_and_certificate_key(case: Case) -> None:
    spec, placement, material = case
    token, key, ca_hash = material[m.BOOTSTRAP_TOKEN], material[m.CERTIFICATE_KEY], material[m.DISCOVERY_HASH]
    vip = f"{spec.network.vip}:6443"
    config = _config(spec, placement)
    master = yaml.safe_load(k.kubeadm_join_config(config, _cp(placement)[1], material, control_plane=True))
    worker = yaml.safe_load(k.kubeadm_join_config(config, _worker(placement), material, control_plane=False))
    for join in (master, worker):
        assert join["discovery"]["bootstrapToken"] == {
            "token": token, "apiServerEndpoint": vip, "caCertHashes": [ca_hash]
        }
        assert join["discovery"]["tlsBootstrapToken"] == token
        assert join["nodeRegistration"]["criSocket"] == "unix:///run/containerd/containerd.sock"
    assert master["controlPlane"]["certificateKey"] == key
    assert master["controlPlane"]["localAPIEndpoint"]["advertiseAddress"] == str(_cp(placement)[1].ip)
    assert "controlPlane" not in worker
    init = list(yaml.safe_load_all(k.kubeadm_init_config(_config(spec, placement), _cp(placement)[0], material)))
    assert init[0]["certificateKey"] == key
    assert init[0]["bootstrapTokens"][0]["token"] == token
    assert init[0]["bootstrapTokens"][0]["ttl"] == "24h0m0s"


def test_wait_scale_multiplies_kubeadm_timeouts_and_step_waits() -> None:
    spec, placement, material = _stack("Pulumi.prod.yaml")
    slow = _with(spec, kubernetes={"wait_scale": 5})
    init, _cluster, _kubelet = yaml.safe_load_all(k.kubeadm_init_config(_config(slow, placement), _cp(placement)[0],
                                                                         material))
    assert init["timeouts"] == {"controlPlaneComponentHealthCheck": "20m0s", "kubeletHealthCheck": "20m0s",
                                "kubernetesAPICall": "5m0s"}
    join = yaml.safe_load(k.kubeadm_join_config(_config(slow, placement), _worker(placement), material,
                                                control_plane=False))
    assert join["timeouts"]["discovery"] == "25m0s" and join["timeouts"]["kubernetesAPICall"] == "5m0s"
    step = k.control_plane_init_step(k.control_plane_config(slow, placement), _cp(placement)[0], material)
    assert ("K8SHA_WAIT_SCALE", "5") in step.env


def _args(value: Any) -> dict[str, str]:
    """extraArgs in either shape (v1beta4 list of {name, value}, v1beta3 map) as a dict."""
    return {a["name"]: a["value"] for a in value} if isinstance(value, list) else dict(value)


def test_cluster_configuration_vip_sans_external_etcd_and_leader_election(case: Case) -> None:
    spec, placement, material = case
    node = _cp(placement)[0]
    init, cluster, kubelet = yaml.safe_load_all(k.kubeadm_init_config(_config(spec, placement), node, material))
    vip = str(spec.network.vip)
    assert cluster["controlPlaneEndpoint"] == f"{vip}:6443"
    sans = cluster["apiServer"]["certSANs"]
    assert sans[0] == vip
    for lb in placement.by_role(Role.LOAD_BALANCER):
        assert lb.name in sans and str(lb.ip) in sans
    for cp in _cp(placement):
        assert cp.name in sans
    assert len(sans) == len(set(sans))
    assert cluster["etcd"]["external"] == {
        "endpoints": [f"https://{n.ip}:2379" for n in placement.by_role(Role.ETCD)],
        "caFile": "/etc/kubernetes/pki/etcd/ca.crt",
        "certFile": "/etc/kubernetes/pki/apiserver-etcd-client.crt",
        "keyFile": "/etc/kubernetes/pki/apiserver-etcd-client.key",
    }
    failover = spec.kubernetes.failover
    for component in ("controllerManager", "scheduler"):
        args = _args(cluster[component]["extraArgs"])
        assert args["leader-elect"] == "true"
        assert args["leader-elect-lease-duration"] == f"{failover.leader_lease_s}s"
    manager = _args(cluster["controllerManager"]["extraArgs"])
    assert manager["node-monitor-grace-period"] == f"{failover.node_monitor_grace_period_s}s"
    assert manager["node-monitor-period"] == f"{failover.node_monitor_period_s}s"
    assert float(manager["node-eviction-rate"]) == failover.node_eviction_rate
    api_args = _args(cluster["apiServer"]["extraArgs"])
    assert api_args["default-unreachable-toleration-seconds"] == str(failover.pod_eviction_timeout_s)
    assert api_args["default-not-ready-toleration-seconds"] == str(failover.pod_eviction_timeout_s)
    assert cluster["networking"] == {
        "podSubnet": str(spec.kubernetes.pod_cidr),
        "serviceSubnet": str(spec.kubernetes.service_cidr),
        "dnsDomain": spec.kubernetes.cluster_domain,
    }
    assert cluster["imageRepository"] == spec.mirrors.image_repository
    assert init["nodeRegistration"]["name"] == node.name
    assert _args(init["nodeRegistration"]["kubeletExtraArgs"])["node-ip"] == str(node.ip)
    assert kubelet["cgroupDriver"] == "systemd"
    assert kubelet["nodeLeaseDurationSeconds"] == failover.node_lease_duration_s


def test_node_labels_carry_the_failure_domain() -> None:
    spec, placement, material = _stack("Pulumi.staging.yaml")  # existing hosts: failure domain host:rackN
    metal = next(n for n in placement.by_role(Role.WORKER) if n.name == "metal1")
    assert k.zone_label(metal) == "host-rack1"
    join = yaml.safe_load(k.kubeadm_join_config(_config(spec, placement), metal, material, control_plane=False))
    labels = _args(join["nodeRegistration"]["kubeletExtraArgs"])["node-labels"]
    assert labels == "topology.kubernetes.io/zone=host-rack1"


# ---- containerd --------------------------------------------------------------------------------


def test_sandbox_image_follows_the_image_repository() -> None:
    staging, _, _ = _stack("Pulumi.staging.yaml")
    prod, _, _ = _stack("Pulumi.prod.yaml")
    assert k.sandbox_image(_config(staging)) == "registry.aliyuncs.com/google_containers/pause:3.10.2"
    assert k.sandbox_image(_config(prod)) == "registry.k8s.io/pause:3.10.2"
    assert k.sandbox_image(_config(_with(prod, versions={"kubernetes": "1.35.8"}))) == "registry.k8s.io/pause:3.10.1"
    staging_containerd = k.containerd_config(_config(staging))
    assert 'sandbox = "registry.aliyuncs.com/google_containers/pause:3.10.2"' in staging_containerd


def _dump(containerd: str, text: str, tmp_path: Path) -> dict[str, Any]:
    config = write(tmp_path / "config.toml", text)
    result = run([containerd, "--config", str(config), "config", "dump"])
    assert_ok(result, "containerd config dump")
    assert "level=warning" not in result.stderr, result.stderr  # no migration, no deprecated key
    return tomllib.loads(result.stdout)


@pytest.mark.parametrize("name", EXAMPLE_STACKS)
def test_containerd2_accepts_the_config_and_applies_it(name: str, tmp_path: Path) -> None:
    """The default (containerd 2.x) config through the real containerd 2 binary."""
    containerd = containerd2()
    spec, _, _ = _stack(name)
    dump = _dump(containerd, k.containerd_config(_config(spec)), tmp_path)
    images = dump["plugins"]["io.containerd.cri.v1.images"]
    runtime = dump["plugins"]["io.containerd.cri.v1.runtime"]
    assert images["pinned_images"]["sandbox"] == k.sandbox_image(_config(spec))
    assert images["registry"]["config_path"] == "/etc/containerd/certs.d"
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["SystemdCgroup"] is True and runc["options"]["BinaryName"] == "/usr/local/sbin/runc"
    assert runtime["cni"]["bin_dirs"] == ["/opt/cni/bin"]


def test_containerd1_config_for_kubernetes_1_35(tmp_path: Path) -> None:
    """Kubernetes 1.35 still runs on containerd 1.7: its version-2 config through a real 1.x binary."""
    containerd = require_tool("containerd", "the render tier runs `containerd config dump` (Debian's 1.x)")
    spec, _, _ = _stack("Pulumi.prod.yaml")
    old = _with(spec, versions={"kubernetes": "1.35.8", "containerd": "1.7.28"})
    config = write(tmp_path / "config.toml", k.containerd_config(_config(old)))
    result = run([containerd, "--config", str(config), "config", "dump"])
    assert_ok(result, "containerd config dump")
    cri = tomllib.loads(result.stdout)["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10.1"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert cri["registry"]["config_path"] == "/etc/containerd/certs.d"


def test_containerd_rejects_a_broken_config(tmp_path: Path) -> None:
    containerd = containerd2()
    spec, _, _ = _stack("Pulumi.dev.yaml")
    broken = write(tmp_path / "config.toml", k.containerd_config(_config(spec)).replace("[plugins]", "[plugins"))
    assert run([containerd, "--config", str(broken), "config", "dump"]).returncode != 0


# ---- registries (certs.d) ----------------------------------------------------------------------

TOP_KEYS = {"server", "capabilities", "ca", "client", "skip_verify", "header", "override_path", "host"}
HOST_KEYS = {"capabilities", "ca", "client", "skip_verify", "header", "override_path"}


def check_hosts_toml(text: str) -> dict[str, Any]:
    """containerd's hosts.toml keys only; every host table has its own `ca`, none at top level
    (a top-level `ca` applies to `server` only: containerd#7118)."""
    doc = tomllib.loads(text)
    assert set(doc) <= TOP_KEYS, f"unknown keys {set(doc) - TOP_KEYS}"
    assert "ca" not in doc, "`ca` at top level applies to `server` only, not to the mirror hosts"
    assert doc.get("host"), "containerd 1.6 needs at least one [host.\"...\"] table"
    assert re.fullmatch(r"https://[^/\s]+", doc["server"])
    for url, table in doc["host"].items():
        assert url.startswith("https://"), url
        assert set(table) <= HOST_KEYS, f"{url}: unknown keys {set(table) - HOST_KEYS}"
        assert set(table["capabilities"]) <= {"pull", "resolve", "push"}
        assert "ca" in table, f"{url}: no `ca` inside the host table"
    return doc


def test_hosts_toml_pull_through_harbor_with_its_ca() -> None:
    spec, placement, material = _stack("Pulumi.prod.yaml")
    harbor = str(placement.by_role(Role.HARBOR)[0].ip)
    files = {f.path: f for f in k.registry_host_files(_config(spec, placement), material)}
    ca_path = f"/etc/containerd/certs.d/{harbor}/ca.crt"
    assert files[ca_path].content == material[m.HARBOR_CERT]
    own = check_hosts_toml(files[f"/etc/containerd/certs.d/{harbor}/hosts.toml"].content)
    assert own["host"][f"https://{harbor}"]["ca"] == ca_path
    for registry, (project, upstream) in HARBOR_PROXY_PROJECTS.items():
        doc = check_hosts_toml(files[f"/etc/containerd/certs.d/{registry}/hosts.toml"].content)
        assert doc["server"] == upstream  # the fallback when Harbor is down
        mirror = doc["host"][f"https://{harbor}/v2/{project}"]
        assert mirror == {"capabilities": ["pull", "resolve"], "override_path": True, "ca": ca_path}
    assert set(files) == {ca_path, f"/etc/containerd/certs.d/{harbor}/hosts.toml"} | {
        f"/etc/containerd/certs.d/{r}/hosts.toml" for r in HARBOR_PROXY_PROJECTS
    }


def test_hosts_toml_checker_catches_a_misplaced_ca() -> None:
    bad = (
        'server = "https://registry-1.docker.io"\nca = "/x/ca.crt"\n'
        '[host."https://h/v2/p"]\n  capabilities = ["pull"]\n'
    )
    with pytest.raises(AssertionError, match="top level"):
        check_hosts_toml(bad)
    typo = 'server = "https://q"\n[host."https://h"]\n  capabilities = ["pull"]\n  ca = "/c"\n  overide_path = true\n'
    with pytest.raises(AssertionError, match="unknown keys"):
        check_hosts_toml(typo)


def test_registry_files_follow_harbor_settings() -> None:
    spec, placement, material = _stack("Pulumi.prod.yaml")
    no_cache = _with(spec, harbor={"proxy_cache": False})
    paths = [f.path for f in k.registry_host_files(_config(no_cache, placement), material)]
    assert paths == ["/etc/containerd/certs.d/10.20.0.40/ca.crt", "/etc/containerd/certs.d/10.20.0.40/hosts.toml"]
    named = _with(spec, harbor={"hostname": "harbor.prod.example"})
    assert k.harbor_registry_host(named, placement) == "harbor.prod.example"
    for name in ("Pulumi.dev.yaml", "Pulumi.staging.yaml"):  # no Harbor: no certs.d files
        other, other_placement, other_material = _stack(name)
        assert k.registry_host_files(_config(other, other_placement), other_material) == []


# ---- steps ---------------------------------------------------------------------------------------


def _steps(spec: StackSpec, placement: Placement, material: dict[str, str]) -> list[Step]:
    first, second = _cp(placement)[:2]
    worker = _worker(placement)
    return [
        k.k8s_node_step(_config(spec, placement), first, material),
        k.control_plane_init_step(k.control_plane_config(spec, placement), first, material),
        k.control_plane_join_step(_config(spec, placement), second, material),
        k.worker_join_step(_config(spec, placement), worker, material),
        k.worker_membership_step(k.pool_membership(spec, placement, worker.pool), worker, material),
    ]


def _upgrade_steps(spec: StackSpec, placement: Placement, material: dict[str, str]) -> list[Step]:
    """The rolling upgrade's steps: the first master's, another master's, a worker's drain, own
    upgrade and uncordon."""
    first, second = _cp(placement)[:2]
    worker = _worker(placement)
    config, pool = _config(spec, placement), k.pool_membership(spec, placement, worker.pool)
    return [
        k.k8s_upgrade_step(config, first, "first", material),
        k.k8s_upgrade_step(config, second, "control-plane", material),
        k.worker_upgrade_step(config, pool, worker, "drain", material),
        k.k8s_upgrade_step(config, worker, "worker", material),
        k.worker_upgrade_step(config, pool, worker, "uncordon", material),
        k.control_plane_restart_step(config, second, "cd" * 32, material),  # after an etcd restore
    ]


@pytest.mark.parametrize("name", EXAMPLE_STACKS)
def test_bundles_pass_bash_n_and_shellcheck(name: str, tmp_path: Path) -> None:
    spec, placement, material = _stack(name)
    paths = []
    for step in [*_steps(spec, placement, material), *_upgrade_steps(spec, placement, material)]:
        path = write(tmp_path / f"{step.host}-{step.name}.sh", bundle(step))
        assert_ok(run(["bash", "-n", str(path)]), f"bash -n {step.name}")
        paths.append(str(path))
    # The scripts are the same for every stack (only staged files and env values differ, and
    # those are quoted by the bundle): shellcheck one stack, the one with the most files.
    if name == "Pulumi.prod.yaml":
        shellcheck = require_tool("shellcheck")
        assert_ok(run([shellcheck, "-s", "bash", "-S", "style", *paths]), "shellcheck")


def test_shellcheck_catches_a_broken_script(tmp_path: Path) -> None:
    shellcheck = require_tool("shellcheck")
    text = "#!/usr/bin/env bash\nset -euo pipefail\nfor f in $(ls *.yaml); do echo $f; done\n"
    path = write(tmp_path / "bad.sh", text)
    assert run([shellcheck, "-s", "bash", str(path)]).returncode != 0


SCRIPTS = ["k8s-node.sh", "k8s-init.sh", "k8s-join.sh", "k8s-reset.sh", "k8s-drain.sh", "k8s-node-ready.sh",
           "k8s-upgrade.sh", "k8s-upgrade-worker.sh", "k8s-certs.sh"]

# Check-then-act guards that make a second run a no-op, per script.
GUARDS = {
    "k8s-node.sh": ['k8s_install_release "$component" "$version" "$sha" "$url"',
                    "k8sha_service containerd restart /etc/containerd/config.toml",
                    'if ! systemctl is-enabled --quiet kubelet'],
    "k8s-init.sh": ['if [ ! -f "$K8S_ADMIN" ]', 'if [ "$left" -lt "$K8S_TOKEN_MARGIN" ]',
                    'if [ "$left" -lt "$K8S_CERTS_MARGIN" ]', "kubeadm config validate --config"],
    "k8s-join.sh": ['[ ! -f "$K8S_KUBELET_CONF" ] || joined_before=yes', 'if [ "$joined_before" = no ]',
                    "kubeadm config validate --config"],
    "k8s-reset.sh": ["--ignore-not-found", "kubeadm reset -f"],
    "k8s-drain.sh": ["--ignore-not-found", "deadline=$((SECONDS + 300))", "k8s_schedulable_elsewhere"],
    "k8s-node-ready.sh": ['if [ "${#missing[@]}" -gt 0 ] || [ "${#stale[@]}" -gt 0 ]',
                          'if [ "$previous" != "$managed" ]'],
    "k8s-upgrade.sh": ['if [ ! -f /etc/kubernetes/kubelet.conf ] || [ -z "$have" ]',
                       'if [ "$have" = "$want" ] && [ "$(k8s_installed kubeadm)" = "$want" ]',
                       'k8s_install_release $line',
                       'reason=$(k8s_upgrade_refusal "$have" "$want")'],
    "k8s-certs.sh": ['[ -z "$end" ] || [ "$end" -ge "$window_end" ] || due+=("$name")',
                     'if [ "${#due[@]}" -gt 0 ]; then',
                     '[ "$(date -d "$started" +%s)" -lt "$(stat -c %Y "$etcd_client")" ]'],
    "k8s-upgrade-worker.sh": ['if [ ! -f "$K8S_ADMIN" ]', 'if [ -z "$have" ] || [ "$have" = "$want" ]',
                              'reason=$(k8s_upgrade_refusal "$have" "$want")'],
}


def test_release_install_checks_its_mark_and_files_first() -> None:
    """The helper node preparation and the upgrade steps share: a second run fetches nothing."""
    text = (CONFIGS / "scripts" / "k8s-lib.sh").read_text()
    body = text[text.index("k8s_install_release() {"):]
    guard = 'if [ "$(cat "$K8S_MARKS/$component" 2>/dev/null)" = "$version $sha" ] && k8s_release_present'
    assert guard in body and body.index(guard) < body.index('k8sha_fetch "$url" "$sha" "$file"')


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_strict_and_idempotent(script: str) -> None:
    text = (CONFIGS / "scripts" / script).read_text()
    assert "set -euo pipefail" in text
    assert text.rstrip().endswith("k8sha_done"), f"{script} must end with k8sha_done (the 'no changes' marker)"
    for guard in GUARDS[script]:
        assert guard in text, f"{script}: missing guard {guard!r}"
    # Long-running or interactive tools never read the bundle's stdin.
    for line in text.splitlines():
        if re.match(r"\s*kubeadm (init|join|reset|token create|config images|upgrade)", line):
            assert "</dev/null" in line or "\\" in line, f"{script}: {line.strip()}"


def test_steps_wire_the_right_scripts_and_deletes() -> None:
    spec, placement, material = _stack("Pulumi.prod.yaml")
    node, init, join, worker, member = _steps(spec, placement, material)
    assert (node.script, node.delete_script) == ("k8s-node.sh", None)
    assert (init.script, init.delete_script) == ("k8s-init.sh", "k8s-reset.sh")
    assert (join.script, join.delete_script) == ("k8s-join.sh", "k8s-reset.sh")
    assert (worker.script, worker.delete_script) == ("k8s-join.sh", "k8s-reset.sh")
    assert (member.script, member.delete_script) == ("k8s-node-ready.sh", "k8s-drain.sh")
    assert member.host == _cp(placement)[0].name  # runs where admin.conf is, never on the worker
    assert dict(join.env)["K8SHA_ROLE"] == "control-plane" and dict(worker.env)["K8SHA_ROLE"] == "worker"
    labels = dict(member.env)["K8SHA_LABELS"].split()
    assert "node-role.kubernetes.io/worker=" in labels and "k8s-ha.io/pool=general" in labels
    assert dict(init.env)["K8SHA_TOKEN_ID"] == material[m.BOOTSTRAP_TOKEN].split(".")[0]
    assert set(dict(init.env)["K8SHA_JOINING"].split()) == {
        n.name for n in placement.nodes if n.role in (Role.CONTROL_PLANE, Role.WORKER)
    } - {init.host}


def test_upgrade_steps_run_where_their_credentials_are() -> None:
    """A master upgrades (and drains) itself with its admin.conf; a worker's drain and uncordon run
    on the first master, its own step on the worker; every step installs only kubeadm, the kubelet
    and kubectl, pinned, and none of them carries a secret."""
    spec, placement, material = _stack("Pulumi.prod.yaml")
    first, other, drain, worker, uncordon, _restart = _upgrade_steps(spec, placement, material)
    master = _cp(placement)[0].name
    assert [s.host for s in (first, other, drain, worker, uncordon)] == [
        master, _cp(placement)[1].name, master, _worker(placement).name, master]
    assert [dict(s.env).get("K8SHA_UPGRADE") for s in (first, other, worker)] == ["first", "control-plane", "worker"]
    assert [dict(s.env)["K8SHA_PHASE"] for s in (drain, uncordon)] == ["drain", "uncordon"]
    for step in (first, other, worker):
        records = [line.split() for line in dict(step.env)["K8SHA_FILES"].splitlines()]
        assert [r[0] for r in records] == ["kubeadm", "kubelet", "kubectl"]
        assert all(RELEASE_SHA256[c][v] == sha for c, v, sha, _ in records)
        assert dict(step.env)["K8SHA_KUBE_VERSION"] == "1.36.4"
    assert not any(s.secret or s.files or s.delete_script for s in (first, other, drain, worker, uncordon))
    with pytest.raises(ValueError, match="upgrade role 'second'"):
        k.k8s_upgrade_step(_config(spec, placement), _cp(placement)[1], "second", material)


def test_pki_goes_to_the_first_master_only_and_secrets_are_private() -> None:
    spec, placement, material = _stack("Pulumi.prod.yaml")
    _, init, join, worker, _ = _steps(spec, placement, material)
    assert _file(init, "/etc/kubernetes/pki/ca.crt").content == material[m.KUBERNETES_CA]
    assert _file(init, "/etc/kubernetes/pki/ca.key").content == material[m.KUBERNETES_CA_KEY]
    assert _file(init, "/etc/kubernetes/pki/sa.pub").content == material[m.SERVICE_ACCOUNT_PUB]
    # A joining node must not hold ca.crt before `kubeadm join` (its preflight refuses it); the
    # control-plane certificates arrive encrypted with the certificate key.
    assert not any(f.path.endswith(("/ca.key", "pki/ca.crt", "sa.key")) for f in (*join.files, *worker.files))
    assert _file(join, "/etc/kubernetes/pki/apiserver-etcd-client.crt").content == material[m.APISERVER_ETCD_CERT]
    for step in (init, join, worker):
        for f in step.files:
            holds_secret = any(material[n] in f.content for n in (
                m.KUBERNETES_CA_KEY, m.FRONT_PROXY_CA_KEY, m.SERVICE_ACCOUNT_KEY, m.APISERVER_ETCD_KEY,
                m.BOOTSTRAP_TOKEN, m.CERTIFICATE_KEY))
            assert holds_secret == f.secret, f.path
            if f.secret:
                assert f.mode == "0600", f.path
        assert step.secret


@pytest.mark.parametrize("name", EXAMPLE_STACKS)
def test_node_step_pins_every_release_file(name: str) -> None:
    spec, placement, material = _stack(name)
    step = k.k8s_node_step(_config(spec, placement), _cp(placement)[0], material)
    env = dict(step.env)
    assert env["K8SHA_KUBE_VERSION"] == "1.36.4"
    records = [line.split() for line in env["K8SHA_FILES"].splitlines()]
    assert [r[0] for r in records] == ["kubeadm", "kubelet", "kubectl", "containerd", "runc", "cni-plugins", "crictl"]
    for component, version, sha, url in records:
        assert RELEASE_SHA256[component][version] == sha
        base = spec.artifacts.files_repo
        assert url.startswith(f"{base}/" if base else "https://"), url
    kubeadm = "dl.k8s.io/release/v1.36.4/bin/linux/amd64/kubeadm"
    assert f"{spec.artifacts.files_repo or 'https:/'}/{kubeadm}" in env["K8SHA_FILES"]
    assert "ExecStart=/usr/local/bin/kubelet $KUBELET_KUBECONFIG_ARGS" in _file(
        step, "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf").content
    assert "ExecStart=/usr/local/bin/containerd" in _file(step, "/etc/systemd/system/containerd.service").content
    assert _file(step, "/etc/containerd/config.toml").content == k.containerd_config(_config(spec, placement))
    assert "br_netfilter" in _file(step, "/etc/modules-load.d/k8s-ha-kubernetes.conf").content
    sysctls = _file(step, "/etc/sysctl.d/99-k8s-ha-kubernetes.conf").content
    for key in ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables", "net.ipv4.ip_forward"):
        assert f"{key} = 1" in sysctls
    assert not step.secret


def test_staging_fetches_every_file_through_its_files_mirror() -> None:
    spec, _, _ = _stack("Pulumi.staging.yaml")
    urls = [f.url for f in _config(spec).node_files()]
    assert "http://files.staging.internal/k8s-ha/dl.k8s.io/release/v1.36.4/bin/linux/amd64/kubeadm" in urls
    assert all(url.startswith("http://files.staging.internal/k8s-ha/") for url in urls)


def test_admin_kubeconfig_points_at_the_vip() -> None:
    spec, _, material = _stack("Pulumi.prod.yaml")
    text = k.admin_kubeconfig(_config(spec), material[m.KUBERNETES_CA], "CERT PEM\n", "KEY PEM\n")
    config = yaml.safe_load(text)
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://10.20.0.10:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]).decode() == material[m.KUBERNETES_CA]
    user = config["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]) == b"CERT PEM\n"
    assert base64.b64decode(user["client-key-data"]) == b"KEY PEM\n"
    context = config["contexts"][0]
    assert config["current-context"] == context["name"]
    assert context["context"] == {"cluster": "prod", "user": config["users"][0]["name"]}


def test_cli_placeholders_render_without_real_material() -> None:
    spec, placement = load_example("Pulumi.prod.yaml")
    placeholders = m.Placeholders()
    for step in _steps(spec, placement, placeholders):
        assert bundle(step)
    init = k.kubeadm_init_config(_config(spec, placement), _cp(placement)[0], placeholders)
    assert len(list(yaml.safe_load_all(init))) == 3  # still well-formed YAML
    assert "<secret:kubernetes/bootstrap-token>" in init


# ---- the scripts themselves, run twice with stand-ins for kubeadm/kubectl/crictl/curl --------------
# Each run happens in a private mount namespace with a copy-on-write /etc (overlayfs), so nothing
# on this machine changes; the stand-ins record their calls and keep the cluster's state (token
# and certificate expiry, Node labels) in a directory, like the API server would.

STUBS = {
    "kubeadm": r"""#!/bin/bash
set -eu
S=$K8STEST_STATE
echo "kubeadm $*" >>"$S/calls"
expiry() { date -u -d "@$(($(date +%s) + $1))" +%Y-%m-%dT%H:%M:%SZ; }
control_plane() {
  mkdir -p /etc/kubernetes/manifests
  echo admin >/etc/kubernetes/admin.conf
  echo apiserver >/etc/kubernetes/manifests/kube-apiserver.yaml
}
upload() { cp /etc/kubernetes/pki/apiserver-etcd-client.crt "$S/uploaded-etcd-client"; }
case "$1 $2" in
  "config validate") [ -s "$4" ] ;;
  "config images") ;;
  # kubeadm-certs: what init uploads (here the etcd client certificate) and a master's join writes.
  "init --config") control_plane; expiry 86400 >"$S/token"; expiry 7200 >"$S/certs"; upload ;;
  "init phase") expiry 7200 >"$S/certs"; upload ;;
  "token create") expiry 86400 >"$S/token" ;;
  "join --config")
    echo kubelet >/etc/kubernetes/kubelet.conf
    if grep -q '^controlPlane:' "$3"; then
      control_plane
      if [ -f "$S/uploaded-etcd-client" ]; then
        cp "$S/uploaded-etcd-client" /etc/kubernetes/pki/apiserver-etcd-client.crt
      fi
    fi ;;
  "reset -f") rm -rf /etc/kubernetes/manifests /etc/kubernetes/*.conf ;;
  *) echo "unexpected: kubeadm $*" >&2; exit 9 ;;
esac
""",
    "kubectl": r"""#!/bin/bash
set -eu
S=$K8STEST_STATE
echo "kubectl $*" >>"$S/calls"
touch "$S/labels" "$S/annotation"
case " $* " in
  *" get secret bootstrap-token-certs "*) if [ -f "$S/certs" ]; then base64 -w0 <"$S/certs"; fi ;;
  *" get secret bootstrap-token-"*) if [ -f "$S/token" ]; then base64 -w0 <"$S/token"; fi ;;
  *" get secret kubeadm-certs "*) if [ -f "$S/certs" ]; then printf bootstrap-token-certs; fi ;;
  *" get nodes "*) printf 'cp1 cp2 ' ;;
  *" get node "*"{.metadata.labels}"*) printf '{"node-role.kubernetes.io/control-plane":""}' ;;
  *" get node "*'Ready'*) printf True ;;
  *" get node "*"go-template"*) cat "$S/labels" ;;
  *" get node "*"annotations"*) cat "$S/annotation" ;;
  *" get node "*) printf 'node/x\n' ;;
  *" drain "* | *" cordon "* | *" delete node "*) ;;
  *" label node "*)
    shift 6  # --kubeconfig F --request-timeout=T label node NAME: shift to the first label
    for arg in "$@"; do
      case "$arg" in
        --overwrite) ;;
        *-) grep -v "^${arg%-}=" "$S/labels" >"$S/labels.new" || true; mv "$S/labels.new" "$S/labels" ;;
        *) grep -v "^${arg%%=*}=" "$S/labels" >"$S/labels.new" || true; echo "$arg" >>"$S/labels.new"
           mv "$S/labels.new" "$S/labels" ;;
      esac
    done ;;
  *" annotate node "*) for arg; do case "$arg" in k8s-ha.io/*) printf '%s' "${arg#*=}" >"$S/annotation" ;; esac; done ;;
  *) echo "unexpected: kubectl $*" >&2; exit 9 ;;
esac
""",
    "crictl": r"""#!/bin/bash
echo "crictl $*" >>"$K8STEST_STATE/calls"
if [ "$1" = ps ]; then echo c0ffee; fi
""",
    "curl": r"""#!/bin/bash
# Downloads from the test's files mirror on loopback go through the real curl (and are logged);
# every other call (a probe such as the kubelet's healthz) just succeeds.
for arg; do
  case "$arg" in http://127.0.0.1:*/files/*) echo "curl $arg" >>"$K8STEST_STATE/calls"; exec /usr/bin/curl "$@" ;; esac
done
""",
}

# Stand-ins for the package, service and kernel tools k8s-node.sh uses (containerd itself is the
# real binary: `containerd config dump` only parses the file).
NODE_STUBS = {
    "dpkg-query": r"""#!/bin/bash
pkg=${*: -1}; f="$K8STEST_STATE/pkgs/$pkg"
[ -f "$f" ] || exit 1
case "$*" in *Version*) printf 'installed %s' "$(cat "$f")" ;; *) printf installed ;; esac
""",
    "apt-get": r"""#!/bin/bash
echo "apt-get $*" >>"$K8STEST_STATE/calls"
[ "$1" = update ] && exit 0
mkdir -p "$K8STEST_STATE/pkgs"
for arg; do
  case "$arg" in
    -*|install) ;;
    *=*) printf '%s' "${arg#*=}" >"$K8STEST_STATE/pkgs/${arg%%=*}" ;;
    *) printf 1.0 >"$K8STEST_STATE/pkgs/$arg" ;;
  esac
done
""",
    "systemctl": r"""#!/bin/bash
echo "systemctl $*" >>"$K8STEST_STATE/calls"
q=; [ "$2" = --quiet ] && { q=1; set -- "$1" "$3"; }
d="$K8STEST_STATE/units"; mkdir -p "$d"
case "$1" in
  enable) touch "$d/$2.enabled" ;;
  is-enabled) [ -f "$d/$2.enabled" ] ;;
  is-active) [ -f "$d/$2.active" ] ;;
  start|restart|reload) touch "$d/$2.active"; [ "$2" != containerd ] || "$K8STEST_STATE/../bin/containerd-socket" ;;
  daemon-reload) ;;
esac
""",
    # A listening-free stand-in for containerd's socket (the scripts only test that it exists).
    "containerd-socket": r"""#!/bin/bash
mkdir -p /run/containerd && rm -f /run/containerd/containerd.sock
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' /run/containerd/containerd.sock
""",
    "sysctl": r"""#!/bin/bash
d="$K8STEST_STATE/sysctl"; mkdir -p "$d"
case "$*" in
  "-n "*) cat "$d/$2" 2>/dev/null || echo 0 ;;
  *" -p "*)
    echo "sysctl $*" >>"$K8STEST_STATE/calls"
    while IFS='= ' read -r k v; do case "$k" in ''|'#'*) ;; *) echo "$v" >"$d/$k" ;; esac; done <"${*: -1}" ;;
esac
""",
    "modprobe": r"""#!/bin/bash
echo "modprobe $*" >>"$K8STEST_STATE/calls"
if [ "$1" = --dry-run ]; then ! grep -qx "$2" "$K8STEST_STATE/absent-modules" 2>/dev/null; exit; fi
mkdir -p "/sys/module/$1"
""",
    "swapon": "#!/bin/bash\n[ -f \"$K8STEST_STATE/swap\" ] && echo '/swapfile file 1G 0B -2'\nexit 0\n",
    "swapoff": "#!/bin/bash\necho \"swapoff $*\" >>\"$K8STEST_STATE/calls\"\nrm -f \"$K8STEST_STATE/swap\"\n",
}


class Host:
    """One fake host: a persistent overlay upper dir for /etc, stand-ins on PATH, a state dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        for sub in ("upper", "work", "var-upper", "var-work", "usr-local-upper", "usr-local-work", "opt-upper",
                    "opt-work", "bin", "state"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for name, text in {**STUBS, **NODE_STUBS}.items():
            stub = write(root / "bin" / name, text)
            stub.chmod(0o755)

    def run(self, step: Step, action: str = "apply", *, cgroup: str = "cgroup2") -> str:
        """Run `step` in the sandbox; `cgroup` is what the host has at /sys/fs/cgroup (cgroup2 or tmpfs)."""
        result = self.attempt(step, action, cgroup=cgroup)
        assert result.returncode == 0, self.output
        return result.stdout

    def attempt(self, step: Step, action: str = "apply", *,
                cgroup: str = "cgroup2") -> subprocess.CompletedProcess[str]:
        script = write(self.root / f"{step.name}.sh", bundle(step))
        (self.state / "calls").write_text("")
        modules = self.root / "modules"
        modules.mkdir(exist_ok=True)
        inner = (
            f"mount -t overlay overlay -o lowerdir=/etc,upperdir={self.root}/upper,workdir={self.root}/work /etc"
            f" && mount -t overlay overlay -o lowerdir=/var,upperdir={self.root}/var-upper,"
            f"workdir={self.root}/var-work /var"
            f" && mount -t overlay overlay -o lowerdir=/usr/local,upperdir={self.root}/usr-local-upper,"
            f"workdir={self.root}/usr-local-work /usr/local"
            f" && mount -t overlay overlay -o lowerdir=/opt,upperdir={self.root}/opt-upper,"
            f"workdir={self.root}/opt-work /opt"
            f" && mount --bind {modules} /sys/module"  # loaded modules as the modprobe stand-in leaves them
            f" && {self._hide_absent_features()}"
            f" && {self._cgroup_mount(cgroup)}"  # the cgroup hierarchy the host boots with
            f" && mount -t tmpfs tmpfs /run"  # a running containerd keeps its socket across runs:
            f" && {{ [ ! -f {self.state}/units/containerd.active ] || {self.root}/bin/containerd-socket; }}"
            f" && PATH={self.root}/bin:$PATH K8STEST_STATE={self.state} bash {script} {action}"
        )
        result = run(["unshare", "--mount", "--propagation", "private", "bash", "-c", inner])
        self.output = result.stdout + result.stderr
        return result

    @staticmethod
    def _cgroup_mount(cgroup: str) -> str:
        """cgroup2, tmpfs (nothing in it), or v1: a tmpfs with hierarchy mount points, as legacy boots."""
        if cgroup == "v1":
            return "mount -t tmpfs none /sys/fs/cgroup && mkdir /sys/fs/cgroup/memory /sys/fs/cgroup/pids"
        return f"mount -t {cgroup} none /sys/fs/cgroup"

    def _hide_absent_features(self) -> str:
        """The stand-in kernel has exactly the modules its /sys/module lists (the modprobe stand-in
        adds them): the real kernel's overlay and br_netfilter features, which the preflight also
        accepts for built-in modules, are hidden from the sandbox."""
        filesystems = write(self.root / "filesystems", "".join(
            line + "\n" for line in Path("/proc/filesystems").read_text().splitlines() if "overlay" not in line))
        return (f"mount --bind {filesystems} /proc/filesystems"
                " && { [ ! -d /proc/sys/net/bridge ] || mount -t tmpfs none /proc/sys/net/bridge; }")

    def calls(self, prefix: str) -> list[str]:
        return [c for c in (self.state / "calls").read_text().splitlines() if c.startswith(prefix)]

    def etc(self, path: str) -> Path:
        return self.root / "upper" / path.removeprefix("/etc/")

    def written(self, path: str) -> Path:
        """Where the sandbox wrote the absolute `path` (its copy-on-write upper directories)."""
        for prefix, upper in (("/etc/", "upper"), ("/var/", "var-upper"), ("/usr/local/", "usr-local-upper"),
                              ("/opt/", "opt-upper")):
            if path.startswith(prefix):
                return self.root / upper / path.removeprefix(prefix)
        raise ValueError(f"{path} is not under a sandboxed directory")


@pytest.fixture
def fake_host(tmp_path: Path) -> Host:
    from tests.tools import require_root

    require_root("the scripts run in a private mount namespace with a copy-on-write /etc")
    require_tool("unshare")
    return Host(tmp_path / "host")


def test_init_runs_once_then_only_refreshes_what_expires(fake_host: Host) -> None:
    spec, placement, material = _stack("Pulumi.prod.yaml")
    step = k.control_plane_init_step(k.control_plane_config(spec, placement), _cp(placement)[0], material)
    fake_host.run(step)
    assert fake_host.calls("kubeadm init --config") and not fake_host.calls("kubeadm token create")
    assert fake_host.etc("/etc/kubernetes/pki/ca.key").read_text() == material[m.KUBERNETES_CA_KEY]
    assert oct(fake_host.etc("/etc/kubernetes/pki/ca.key").stat().st_mode & 0o777) == "0o600"

    assert fake_host.run(step).strip() == "k8s-ha k8s-init: no changes"
    assert fake_host.calls("kubeadm") == [f"kubeadm config validate --config {k.INIT_CONFIG}"]

    # 23 h later: the token has 1 h left and the uploaded certificates are gone.
    (fake_host.state / "token").write_text(run(["date", "-u", "-d", "+1 hour", "+%Y-%m-%dT%H:%M:%SZ"]).stdout)
    (fake_host.state / "certs").unlink()
    fake_host.run(step)
    assert fake_host.calls("kubeadm token create --config") and fake_host.calls("kubeadm init phase upload-certs")
    assert not fake_host.calls("kubeadm init --config")
    assert fake_host.run(step).strip() == "k8s-ha k8s-init: no changes"


def test_init_refuses_to_replace_the_cluster_ca(fake_host: Host) -> None:
    spec, placement, material = _stack("Pulumi.prod.yaml")
    node = _cp(placement)[0]
    fake_host.run(k.control_plane_init_step(k.control_plane_config(spec, placement), node, material))
    other = dict(material, **{m.KUBERNETES_CA: generate(spec, placement)[m.KUBERNETES_CA]})
    with pytest.raises(AssertionError):
        fake_host.run(k.control_plane_init_step(k.control_plane_config(spec, placement), node, other))
    assert "cannot be replaced in place" in fake_host.output
    assert fake_host.etc("/etc/kubernetes/pki/ca.crt").read_text() == material[m.KUBERNETES_CA]


def test_a_renewed_etcd_client_certificate_is_installed_and_the_restart_left_to_the_certs_chain(
        fake_host: Host) -> None:
    """Joins run in parallel: restarting every apiserver there at once would leave the VIP with none.
    The join installs the new file; the masters' k8s-certs steps, chained, restart one at a time."""
    spec, placement, material = _stack("Pulumi.prod.yaml")
    node = _cp(placement)[1]
    fake_host.run(k.control_plane_join_step(_config(spec, placement), node, material))
    renewed = generate(spec, placement)
    changed = dict(material, **{m.APISERVER_ETCD_CERT: renewed[m.APISERVER_ETCD_CERT],
                                m.APISERVER_ETCD_KEY: renewed[m.APISERVER_ETCD_KEY]})
    fake_host.run(k.control_plane_join_step(_config(spec, placement), node, changed))
    assert fake_host.etc("/etc/kubernetes/pki/apiserver-etcd-client.crt").read_text() == renewed[m.APISERVER_ETCD_CERT]
    assert not fake_host.calls("crictl stop") and not fake_host.calls("kubeadm join")
    certs = k.control_plane_certs_step(_config(spec, placement), node, changed)
    assert dict(certs.env)["K8SHA_ETCD_CLIENT_SHA256"] != dict(
        k.control_plane_certs_step(_config(spec, placement), node, material).env)["K8SHA_ETCD_CLIENT_SHA256"]


def test_a_master_joins_with_the_programs_certificates_not_an_older_upload(fake_host: Host) -> None:
    """kubeadm's control-plane join writes the certificates the first master uploaded, which can
    predate a renewal of the etcd client certificate: the join installs the program's again."""
    spec, placement, material = _stack("Pulumi.prod.yaml")
    (fake_host.state / "uploaded-etcd-client").write_text("uploaded before the renewal\n")
    fake_host.run(k.control_plane_join_step(_config(spec, placement), _cp(placement)[1], material))
    assert fake_host.calls("kubeadm join --config")
    assert fake_host.etc("/etc/kubernetes/pki/apiserver-etcd-client.crt").read_text() == material[
        m.APISERVER_ETCD_CERT]


def test_init_uploads_the_certificates_again_when_it_installs_a_renewed_one(fake_host: Host) -> None:
    spec, placement, material = _stack("Pulumi.prod.yaml")
    config, node = k.control_plane_config(spec, placement), _cp(placement)[0]
    fake_host.run(k.control_plane_init_step(config, node, material))
    renewed = dict(material, **{m.APISERVER_ETCD_CERT: generate(spec, placement)[m.APISERVER_ETCD_CERT]})
    fake_host.run(k.control_plane_init_step(config, node, renewed))  # the upload is not near its end
    assert fake_host.calls("kubeadm init phase upload-certs")
    assert (fake_host.state / "uploaded-etcd-client").read_text() == renewed[m.APISERVER_ETCD_CERT]


def test_worker_join_is_idempotent_and_its_delete_resets(fake_host: Host) -> None:
    spec, placement, material = _stack("Pulumi.prod.yaml")
    step = k.worker_join_step(_config(spec, placement), _worker(placement), material)
    fake_host.run(step)
    assert len(fake_host.calls("kubeadm join --config")) == 1
    assert fake_host.run(step).strip() == "k8s-ha k8s-join-worker: no changes"
    assert not fake_host.calls("kubeadm join")
    fake_host.run(step, "delete")
    assert fake_host.calls("kubeadm reset -f")
    assert not fake_host.calls("kubectl"), "a worker has no admin.conf and never calls the API"
    assert not any(fake_host.etc("/etc/kubernetes/k8s-ha").iterdir())
    assert fake_host.run(step, "delete").strip() == "k8s-ha k8s-join-worker: no changes"


def test_control_plane_delete_drains_and_deletes_its_node_first(fake_host: Host) -> None:
    spec, placement, material = _stack("Pulumi.prod.yaml")
    node = _cp(placement)[2]
    step = k.control_plane_join_step(_config(spec, placement), node, material)
    fake_host.run(step)
    fake_host.run(step, "delete")
    calls = [re.split(r" --request-timeout=\S+ ", c)[-1] for c in fake_host.calls("kubectl")]
    assert any(c.startswith(f"drain {node.name} ") for c in calls)
    assert any(c.startswith(f"delete node {node.name} ") for c in calls)
    assert fake_host.calls("kubeadm reset -f")


def test_membership_reconciles_labels_and_removes_stale_ones(fake_host: Host) -> None:
    spec, placement, material = _stack("Pulumi.prod.yaml")
    worker = _worker(placement)
    (fake_host.state / "labels").write_text("kubernetes.io/hostname=general-1\nold=1\n")
    (fake_host.state / "annotation").write_text("k8s-ha.io/pool,old")
    step = k.worker_membership_step(k.pool_membership(spec, placement, worker.pool), worker, material)
    fake_host.etc("/etc/kubernetes").mkdir(parents=True)
    fake_host.etc("/etc/kubernetes/admin.conf").write_text("admin")
    fake_host.run(step)
    labels = set((fake_host.state / "labels").read_text().split())
    assert labels == {"kubernetes.io/hostname=general-1", "node-role.kubernetes.io/worker=", "k8s-ha.io/pool=general"}
    assert (fake_host.state / "annotation").read_text() == "k8s-ha.io/pool,node-role.kubernetes.io/worker"
    assert fake_host.run(step).strip() == f"k8s-ha k8s-membership-{worker.name}: no changes"
    fake_host.run(step, "delete")
    assert any(f" drain {worker.name} " in c for c in fake_host.calls("kubectl"))


class FilesMirror:
    """A files mirror on loopback in the releases' layout (<host>/<path>), holding stand-in release
    files whose sha256 the stack pins as a private build: the node step downloads them for real.
    containerd's tarball carries the real containerd 2 binary (k8s-node.sh runs `config dump`)."""

    def __init__(self, root: Path, containerd: str) -> None:
        self.root = root
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/files"
        self.containerd = containerd
        self.checksums: dict[str, dict[str, str]] = {}

    def settings(self, spec: StackSpec) -> ArtifactSettings:
        """Stand-ins for every node file at `spec`'s versions, published and pinned."""
        v = spec.versions
        wanted = ArtifactVersions(kubernetes=v.kubernetes, containerd=v.containerd, runc=v.runc,
                                  cni_plugins=v.cni_plugins, crictl=v.crictl, etcd=v.etcd)
        for f in release_files(wanted, ArtifactSettings()):
            if f.component == "etcd":
                continue
            data = self._content(f.component)
            path = self.root / "files" / f.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self.checksums.setdefault(f.component, {})[f.version] = hashlib.sha256(data).hexdigest()
        return ArtifactSettings(files_repo=self.base, checksums=self.checksums)

    def _content(self, component: str) -> bytes:
        script = f"#!/bin/sh\necho stand-in {component}\n".encode()
        members: dict[str, bytes | str] = {
            "crictl": {"crictl": script},
            "containerd": {"bin/containerd": self.containerd, "bin/containerd-shim-runc-v2": script, "bin/ctr": script},
            "cni-plugins": {name: script for name in ("bridge", "host-local", "loopback", "portmap")},
        }.get(component, {})  # type: ignore[assignment]
        if not members:
            return script
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            for name, body in members.items():
                data = Path(body).read_bytes() if isinstance(body, str) else body
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
        return out.getvalue()

    def corrupt(self, component: str) -> None:
        for path in (self.root / "files").rglob("*"):
            if path.is_file() and component in path.name:
                path.write_bytes(path.read_bytes() + b"tampered")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def files_mirror(tmp_path: Path) -> Iterator[FilesMirror]:
    mirror = FilesMirror(tmp_path / "mirror", containerd2())
    yield mirror
    mirror.server.shutdown()


def _node_spec(mirror: FilesMirror, name: str = "Pulumi.prod.yaml", **versions: str) -> Case:
    spec, placement, material = _stack(name)
    if versions:
        spec = _with(spec, versions=versions)
    return spec.model_copy(update={"artifacts": mirror.settings(spec)}), placement, material


def test_node_preparation_installs_once_then_changes_nothing(fake_host: Host, files_mirror: FilesMirror) -> None:
    spec, placement, material = _node_spec(files_mirror)
    step = k.k8s_node_step(_config(spec, placement), _cp(placement)[0], material)
    (fake_host.state / "swap").touch()
    fake_host.etc("/etc/fstab").write_text("UUID=1 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n")
    fake_host.run(step)
    downloads = fake_host.calls("curl http://127.0.0.1")
    assert len(downloads) == 7 and all(files_mirror.base in d for d in downloads)
    for path in ("usr/local/bin/kubeadm", "usr/local/bin/kubelet", "usr/local/bin/kubectl", "usr/local/bin/crictl",
                 "usr/local/bin/containerd", "usr/local/bin/containerd-shim-runc-v2", "usr/local/sbin/runc",
                 "opt/cni/bin/bridge", "opt/cni/bin/host-local"):
        assert os.access(fake_host.written("/" + path), os.X_OK), path
    assert (fake_host.written("/var/lib/k8s-ha/installed/kubeadm")).read_text().startswith("1.36.4 ")
    assert fake_host.calls("modprobe br_netfilter")
    assert fake_host.calls("swapoff -a") and "# disabled by k8s-ha" in fake_host.etc("/etc/fstab").read_text()
    assert (fake_host.state / "units" / "kubelet.enabled").exists()
    assert (fake_host.state / "units" / "containerd.active").exists()
    assert (fake_host.state / "sysctl" / "net.ipv4.ip_forward").read_text().strip() == "1"
    assert fake_host.etc("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf").exists()

    # Again: nothing downloaded, installed or restarted, with no route out needed.
    assert fake_host.run(step).strip() == "k8s-ha k8s-node: no changes"
    assert not fake_host.calls("apt-get") and not fake_host.calls("curl") and not fake_host.calls("systemctl restart")

    # A new sandbox image: containerd's config changes and only containerd restarts.
    mirrored = _with(spec, mirrors={"image_repository": "harbor.example.com/k8s"})
    fake_host.run(k.k8s_node_step(_config(mirrored, placement), _cp(placement)[0], material))
    assert fake_host.calls("systemctl restart containerd") and not fake_host.calls("curl")

    # Another Kubernetes version on a node that has not joined: it simply gets the stack's version.
    older = k.k8s_node_step(_config(_with(mirrored, versions={"kubernetes": "1.36.3"}), placement),
                            _cp(placement)[0], material)
    assert fake_host.attempt(older).returncode != 0  # this mirror serves 1.36.4 only
    assert "downloading kubeadm 1.36.3 from" in fake_host.output
    # On a node in the cluster it is an upgrade, left to the upgrade step; a downgrade is refused
    # before anything on the node changes.
    write(fake_host.etc("/etc/kubernetes/kubelet.conf"), "apiVersion: v1\nkind: Config\n")
    result = fake_host.attempt(older)
    assert result.returncode != 0
    assert "Kubernetes 1.36.3 is older than the 1.36.4 the cluster runs: kubeadm does not downgrade" in fake_host.output
    assert not fake_host.calls("curl") and not fake_host.calls("apt-get") and not fake_host.calls("systemctl")


def test_a_corrupt_release_file_is_refused_by_name(fake_host: Host, files_mirror: FilesMirror) -> None:
    spec, placement, material = _node_spec(files_mirror)
    files_mirror.corrupt("runc")
    result = fake_host.attempt(k.k8s_node_step(_config(spec, placement), _cp(placement)[0], material))
    assert result.returncode != 0
    assert "checksum mismatch for runc 1.4.3 from " + files_mirror.base in fake_host.output
    assert not (fake_host.written("/usr/local/sbin/runc")).exists()
    assert not (fake_host.written("/var/lib/k8s-ha/installed/runc")).exists()


def test_a_cgroup_v1_host_is_refused_before_anything_changes(fake_host: Host) -> None:
    spec, placement, material = _stack("Pulumi.prod.yaml")
    result = fake_host.attempt(k.k8s_node_step(_config(spec, placement), _cp(placement)[0], material), cgroup="v1")
    assert result.returncode != 0
    assert "/sys/fs/cgroup is cgroup v1, which the kubelet refuses from Kubernetes 1.35 on" in fake_host.output
    assert "or set kubernetes.allowCgroupV1: true in the stack" in fake_host.output
    assert f"node {_cp(placement)[0].name}:" in fake_host.output
    assert not fake_host.calls(""), "nothing may run on a host that is refused"
    assert not any((fake_host.root / "upper").iterdir()), "nothing may be written"


def test_a_cgroup_v1_host_is_accepted_with_the_setting(fake_host: Host) -> None:
    spec, placement, material = _node_container_stack()
    fake_host.attempt(k.k8s_node_step(_config(spec, placement), _cp(placement)[0], material), cgroup="v1")
    assert "WARNING: node cp1 runs on cgroup v1 (kubernetes.allowCgroupV1), which Kubernetes deprecates" \
        in fake_host.output
    assert "installing ca-certificates curl conntrack" in fake_host.output  # past the preflight


def test_a_host_without_any_cgroup_hierarchy_is_refused(fake_host: Host) -> None:
    spec, placement, material = _node_container_stack()
    result = fake_host.attempt(k.k8s_node_step(_config(spec, placement), _cp(placement)[0], material), cgroup="tmpfs")
    assert result.returncode != 0
    assert "node cp1: /sys/fs/cgroup is tmpfs, neither cgroup v2 nor a cgroup v1 hierarchy set" in fake_host.output
    assert not any((fake_host.root / "upper").iterdir()), "nothing may be written"


def test_a_kernel_without_the_modules_is_refused_before_anything_changes(fake_host: Host) -> None:
    spec, placement, material = _stack("Pulumi.prod.yaml")
    (fake_host.state / "absent-modules").write_text("br_netfilter\n")
    result = fake_host.attempt(k.k8s_node_step(_config(spec, placement), _cp(placement)[0], material))
    assert result.returncode != 0
    assert "the kernel has no br_netfilter module(s), which Kubernetes needs" in fake_host.output
    assert [c for c in fake_host.calls("") if not c.startswith("modprobe --dry-run")] == []
    assert not any((fake_host.root / "upper").iterdir())


def test_an_image_registry_mirror_serves_every_image_the_cluster_pulls() -> None:
    """artifacts.imageRegistry (e.g. a served offline bundle): one hosts.toml per upstream registry,
    pulling from the mirror only, so a node with no route out never tries upstream."""
    spec, placement, material = _stack("Pulumi.dev.yaml")
    spec = spec.model_copy(update={"artifacts": ArtifactSettings(image_registry="10.0.0.5:5000")})
    step = k.k8s_node_step(_config(spec, placement), _cp(placement)[0], material)
    hosts = {f.path: tomllib.loads(f.content) for f in step.files if f.path.endswith("/hosts.toml")}
    registries = {ref.registry for ref in images(_config(spec, placement).artifact_versions())}
    assert set(hosts) == {f"/etc/containerd/certs.d/{r}/hosts.toml" for r in registries}
    for toml in hosts.values():  # HTTPS unless the stack says plain HTTP
        assert toml["server"] == "https://10.0.0.5:5000" and "https://10.0.0.5:5000" in toml["host"]

    plain = spec.model_copy(update={"artifacts": ArtifactSettings(image_registry="10.0.0.5:5000",
                                                                  image_registry_plain_http=True)})
    step = k.k8s_node_step(_config(plain, placement), _cp(placement)[0], material)
    for f in step.files:
        if f.path.endswith("/hosts.toml"):
            assert tomllib.loads(f.content)["server"] == "http://10.0.0.5:5000"


def test_an_image_registry_mirror_over_https_is_verified_with_the_stacks_ca() -> None:
    spec, placement, material = _stack("Pulumi.dev.yaml")
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    spec = spec.model_copy(update={"artifacts": ArtifactSettings(image_registry="10.0.0.5:5000",
                                                                 image_registry_ca=ca)})
    step = k.k8s_node_step(_config(spec, placement), _cp(placement)[0], material)
    files = {f.path: f.content for f in step.files}
    assert files["/etc/containerd/certs.d/10.0.0.5:5000/ca.crt"] == ca
    for path, content in files.items():
        if path.endswith("/hosts.toml"):
            host = tomllib.loads(content)["host"]["https://10.0.0.5:5000"]
            assert host["ca"] == "/etc/containerd/certs.d/10.0.0.5:5000/ca.crt", host


def test_an_image_registry_mirror_transport_is_one_or_the_other() -> None:
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    with pytest.raises(ValueError, match="plain HTTP mirror has no certificate"):
        ArtifactSettings(image_registry="10.0.0.5:5000", image_registry_ca=ca, image_registry_plain_http=True)
    with pytest.raises(ValueError, match="imageRegistry, which is not set"):
        ArtifactSettings(image_registry_plain_http=True)
    with pytest.raises(ValueError, match="PEM certificate"):
        ArtifactSettings(image_registry="10.0.0.5:5000", image_registry_ca="not a certificate")
