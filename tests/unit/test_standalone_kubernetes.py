"""ControlPlane, WorkerPool and HarborRegistry on their own: built from Targets and plain values,
with no stack, placement, HaCluster or ClusterPki, under the recording mock monitor."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pulumi
import pytest

from k8s_ha.render.harbor import HarborConfig
from k8s_ha.render.kubernetes import KubernetesConfig, RegistryMirror
from k8s_ha.resources.control_plane import ControlPlane, ControlPlaneArgs
from k8s_ha.resources.harbor import HarborRegistry, HarborRegistryArgs
from k8s_ha.resources.target import Target
from k8s_ha.resources.workers import WorkerPool, WorkerPoolArgs
from tests.unit.harness import Graph, RecordingMonitor, record_exports
from tests.unit.test_harbor_graph import HarborMocks, staged_files

REGISTRY = "registry.alone.example"
HARBOR_CERT = "-----BEGIN CERTIFICATE-----\nSGFyYm9y\n-----END CERTIFICATE-----\n"
TOKEN = "abcdef.0123456789abcdef"
HASH = "sha256:" + "0" * 64
KUBERNETES = KubernetesConfig(
    vip=ipaddress.IPv4Address("10.30.0.10"),
    etcd_endpoints=("https://10.30.0.5:2379",),
    cluster="alone",
    cert_sans=("api.alone.example",),
    registry=RegistryMirror(REGISTRY, proxy_cache=False),
)


def _pem(kind: str, what: str) -> str:
    return f"-----BEGIN {kind}-----\n{what}\n-----END {kind}-----\n"


def _target(name: str, ip: str) -> Target:
    return Target.ssh(name, ip, host_key=f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5{name} {name}",
                      private_key=pulumi.Output.secret(_pem("OPENSSH PRIVATE KEY", "automation")))


def _control_plane_args(masters: list[Target], after: list[pulumi.Resource],
                        registry_certificate: str | None = HARBOR_CERT) -> ControlPlaneArgs:
    def secret(text: str) -> pulumi.Output[str]:
        return pulumi.Output.secret(text)

    return ControlPlaneArgs(
        masters=masters,
        kubernetes=KUBERNETES,
        ca_cert=_pem("CERTIFICATE", "ca"),
        ca_key=secret(_pem("PRIVATE KEY", "ca")),
        front_proxy_ca_cert=_pem("CERTIFICATE", "front-proxy-ca"),
        front_proxy_ca_key=secret(_pem("PRIVATE KEY", "front-proxy-ca")),
        service_account_key=secret(_pem("PRIVATE KEY", "sa")),
        service_account_pub=_pem("PUBLIC KEY", "sa"),
        bootstrap_token=secret(TOKEN),
        certificate_key=secret("c" * 64),
        discovery_hash=HASH,
        etcd_ca_cert=_pem("CERTIFICATE", "etcd-ca"),
        etcd_client_cert=_pem("CERTIFICATE", "apiserver-etcd-client"),
        etcd_client_key=secret(_pem("PRIVATE KEY", "apiserver-etcd-client")),
        admin_cert=_pem("CERTIFICATE", "admin"),
        admin_key=secret(_pem("PRIVATE KEY", "admin")),
        registry_certificate=registry_certificate,
        failure_domains={"m1": "rack a"},
        workers=["w1"],
        after=after,
    )


@dataclass
class Run:
    graph: Graph
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)


@cache
def standalone() -> Run:
    run = Run(Graph())
    mocks = HarborMocks()
    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="alone", stack="test", preview=False,
                             monitor=RecordingMonitor(mocks, run.graph))
    exports: dict[str, pulumi.Output[Any]] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> pulumi.Output[Any]:
        harbor = HarborRegistry("harbor", HarborRegistryArgs(
            host=_target("harbor", "10.30.0.40"),
            config=HarborConfig(host=REGISTRY, installer_sha256="a" * 64, cluster="alone", proxy_cache=False),
            tls_cert=HARBOR_CERT,
            tls_key=pulumi.Output.secret(_pem("PRIVATE KEY", "harbor")),
            admin_password=pulumi.Output.secret("AdminPassword1"),
            db_password=pulumi.Output.secret("DatabasePassword1"),
        ))
        masters = [_target("m1", "10.30.0.11"), _target("m2", "10.30.0.12")]
        control_plane = ControlPlane("control-plane", _control_plane_args(masters, after=harbor.ready))
        WorkerPool("workers-gpu", WorkerPoolArgs(
            workers=[_target("w1", "10.30.0.21")],
            kubernetes=KUBERNETES,
            pool="gpu",
            bootstrap_token=pulumi.Output.secret(TOKEN),
            discovery_hash=HASH,
            control_plane=control_plane,
            labels={"accelerator": "gpu"},
            registry_certificate=HARBOR_CERT,
        ))
        exports["kubeconfig"] = control_plane.kubeconfig
        exports["harborUrl"] = harbor.url
        return pulumi.Output.all(*exports.values())

    program()
    record_exports(exports, run.outputs, run.secret_outputs)
    return run


def test_components_register_their_steps_under_themselves() -> None:
    graph = standalone().graph
    parents = {
        "m1-k8s-node": "control-plane", "m1-k8s-init": "control-plane", "m2-k8s-join": "control-plane",
        "w1-k8s-node": "workers-gpu", "w1-k8s-join": "workers-gpu", "w1-k8s-membership": "workers-gpu",
        "harbor-harbor": "harbor",
    }
    for step, parent in parents.items():
        assert graph.by_urn(graph.named(step).parent).name == parent, step
    assert graph.named("control-plane").type == "k8s-ha:kubernetes:ControlPlane"
    assert graph.named("workers-gpu").type == "k8s-ha:kubernetes:WorkerPool"


def test_order_after_then_init_then_joins_then_membership() -> None:
    graph = standalone().graph
    init = graph.named("m1-k8s-init")
    assert graph.depends_on(init, graph.named("harbor-harbor"))  # `after`
    assert graph.depends_on(init, graph.named("m1-k8s-node"))
    assert graph.depends_on(graph.named("m2-k8s-join"), init)
    join = graph.named("w1-k8s-join")
    assert graph.depends_on(join, init) and graph.depends_on(join, graph.named("w1-k8s-node"))
    membership = graph.named("w1-k8s-membership")
    assert graph.depends_on(membership, join)
    assert membership.inputs["connection"]["host"] == "10.30.0.11"  # runs on the first master


def test_steps_render_the_plain_values() -> None:
    graph = standalone().graph
    init = graph.named("m1-k8s-init").inputs["stdin"]
    assert "export K8SHA_JOINING='m2 w1'\n" in init
    config = staged_files(init)["/etc/kubernetes/k8s-ha/kubeadm-init.yaml"]
    assert "topology.kubernetes.io/zone=rack-a" in config  # the failure domain as a label value
    assert '"api.alone.example"' in config and '"https://10.30.0.5:2379"' in config
    joined = staged_files(graph.named("m2-k8s-join").inputs["stdin"])["/etc/kubernetes/k8s-ha/kubeadm-join.yaml"]
    assert "topology.kubernetes.io/zone=m2" in joined  # not named: its own domain
    node = staged_files(graph.named("w1-k8s-node").inputs["stdin"])
    assert node[f"/etc/containerd/certs.d/{REGISTRY}/ca.crt"] == HARBOR_CERT
    assert "accelerator=gpu" in graph.named("w1-k8s-membership").inputs["stdin"]
    assert "k8s-ha.io/pool=gpu" in graph.named("w1-k8s-membership").inputs["stdin"]


def test_kubeconfig_is_secret_and_points_at_the_vip() -> None:
    run = standalone()
    assert "kubeconfig" in run.secret_outputs
    assert "server: \"https://10.30.0.10:6443\"" in run.outputs["kubeconfig"]
    assert run.outputs["harborUrl"] == f"https://{REGISTRY}"


def test_nodes_pulling_through_harbor_need_its_certificate() -> None:
    with pytest.raises(ValueError, match="registry_certificate"):
        masters = [_target("m1", "10.30.0.11"), _target("m2", "10.30.0.12")]
        ControlPlane("cp", _control_plane_args(masters, after=[], registry_certificate=None))
