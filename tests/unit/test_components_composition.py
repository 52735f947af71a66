"""Several of each component in one stack, under the recording mock monitor.

Two load-balancer pairs, two etcd clusters, two control planes with a worker pool each and two
Harbors, with distinct names, in one program: every URN must be unique (the engine rejects a
duplicate), every child is named from its component, and a component whose input is wrong raises
before it registers anything.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import pulumi
import pytest

from k8s_ha.model.artifacts import ArtifactSettings
from k8s_ha.render.etcd import EtcdSettings
from k8s_ha.render.harbor import HarborConfig
from k8s_ha.render.kubernetes import KubernetesConfig, RegistryMirror
from k8s_ha.render.loadbalancer import FrontDoor
from k8s_ha.render.members import Endpoint
from k8s_ha.resources.control_plane import ControlPlane, ControlPlaneArgs
from k8s_ha.resources.etcd import LEGACY_HEALTH_NAME, ExternalEtcd, ExternalEtcdArgs, MemberTls
from k8s_ha.resources.harbor import HarborRegistry, HarborRegistryArgs
from k8s_ha.resources.loadbalancer import HaproxyKeepalivedPair, HaproxyKeepalivedPairArgs
from k8s_ha.resources.target import Target
from k8s_ha.resources.workers import WorkerPool, WorkerPoolArgs
from tests.unit.harness import Graph, RecordingMonitor
from tests.unit.test_graph import deployed
from tests.unit.test_harbor_graph import HarborMocks

COMMAND = "command:remote:Command"
TOKEN = "abcdef.0123456789abcdef"
HASH = "sha256:" + "0" * 64
MACHINE = "test:index:Machine"


def pem(kind: str, what: str) -> str:
    return f"-----BEGIN {kind}-----\n{what}\n-----END {kind}-----\n"


def target(name: str, ip: str, address: pulumi.Input[str] | None = None) -> Target:
    return Target.ssh(name, ip, host_key=f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5{name} {name}",
                      private_key=pulumi.Output.secret(pem("OPENSSH PRIVATE KEY", "automation")), address=address)


class Machine(pulumi.CustomResource):
    """A machine another provider makes: its address is known only once it exists."""

    public_ip: pulumi.Output[str]

    def __init__(self, name: str) -> None:
        super().__init__(MACHINE, name, {"public_ip": None})


class CompositionMocks(HarborMocks):
    """The Harbor mocks, plus machines whose address comes from the provider."""

    def __init__(self, addresses: dict[str, str] | None = None) -> None:
        self.addresses = addresses or {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        resource_id, outputs = super().new_resource(args)
        if args.typ == MACHINE:
            outputs["public_ip"] = self.addresses[args.name]
        return resource_id, outputs


class CountingMonitor(RecordingMonitor):
    """The recording monitor, keeping every URN it was asked to register (duplicates included)."""

    def __init__(self, mocks: pulumi.runtime.Mocks, graph: Graph) -> None:
        super().__init__(mocks, graph)
        self.urns: list[str] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        self.urns.append(response.urn)
        return response


@dataclass
class Run:
    graph: Graph
    urns: list[str] = field(default_factory=list)


def run_under_mocks(program: Callable[[], object], mocks: CompositionMocks | None = None) -> Run:
    """`program` as a whole Pulumi program under the counting monitor; raises what it raises."""
    graph = Graph()
    mocks = mocks or CompositionMocks()
    monitor = CountingMonitor(mocks, graph)
    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="composition", stack="test", preview=False, monitor=monitor)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> object:
        return program()  # an Output returned here is awaited, so its failure is raised

    run()
    return Run(graph, monitor.urns)


def etcd_args(prefix: str, octet: int) -> ExternalEtcdArgs:
    names = [f"{prefix}-etcd-{i}" for i in range(3)]
    return ExternalEtcdArgs(
        hosts=[target(n, f"10.{octet}.0.{11 + i}") for i, n in enumerate(names)],
        settings=EtcdSettings(version="3.6.14", cluster=prefix),
        ca_cert=pem("CERTIFICATE", f"{prefix}-etcd-ca"),
        member_tls={n: MemberTls(pem("CERTIFICATE", n), pulumi.Output.secret(pem("PRIVATE KEY", n)),
                                 pem("CERTIFICATE", n), pulumi.Output.secret(pem("PRIVATE KEY", n)))
                    for n in names},
        healthcheck_cert=pem("CERTIFICATE", f"{prefix}-health"),
        healthcheck_key=pulumi.Output.secret(pem("PRIVATE KEY", f"{prefix}-health")),
    )


def pair_args(prefix: str, octet: int, hosts: tuple[Target, Target] | None = None) -> HaproxyKeepalivedPairArgs:
    return HaproxyKeepalivedPairArgs(
        hosts=hosts or (target(f"{prefix}-lb-0", f"10.{octet}.0.2"), target(f"{prefix}-lb-1", f"10.{octet}.0.3")),
        front_door=FrontDoor(vip=ipaddress.IPv4Address(f"10.{octet}.0.10"), prefix=24, cluster=prefix,
                             apiservers=(Endpoint(f"{prefix}-m-0", ipaddress.IPv4Address(f"10.{octet}.0.21")),)),
        kubernetes_ca=pem("CERTIFICATE", f"{prefix}-ca"),
        stats_password=pulumi.Output.secret("stats-password"),
        vrrp_password=pulumi.Output.secret("vrrppass"),
    )


def kubernetes(prefix: str, octet: int) -> KubernetesConfig:
    return KubernetesConfig(vip=ipaddress.IPv4Address(f"10.{octet}.0.10"),
                            etcd_endpoints=(f"https://10.{octet}.0.11:2379",), cluster=prefix)


def control_plane_args(prefix: str, octet: int, workers: list[str]) -> ControlPlaneArgs:
    def secret(what: str) -> pulumi.Output[str]:
        return pulumi.Output.secret(pem("PRIVATE KEY", f"{prefix}-{what}"))

    return ControlPlaneArgs(
        masters=[target(f"{prefix}-m-{i}", f"10.{octet}.0.{21 + i}") for i in range(2)],
        kubernetes=kubernetes(prefix, octet),
        ca_cert=pem("CERTIFICATE", f"{prefix}-ca"), ca_key=secret("ca"),
        front_proxy_ca_cert=pem("CERTIFICATE", f"{prefix}-fp"), front_proxy_ca_key=secret("fp"),
        service_account_key=secret("sa"), service_account_pub=pem("PUBLIC KEY", f"{prefix}-sa"),
        bootstrap_token=pulumi.Output.secret(TOKEN), certificate_key=pulumi.Output.secret("c" * 64),
        discovery_hash=HASH,
        etcd_ca_cert=pem("CERTIFICATE", f"{prefix}-etcd-ca"),
        etcd_client_cert=pem("CERTIFICATE", f"{prefix}-etcd-client"), etcd_client_key=secret("etcd-client"),
        admin_cert=pem("CERTIFICATE", f"{prefix}-admin"), admin_key=secret("admin"),
        workers=workers,
    )


def pool_args(prefix: str, octet: int, control_plane: ControlPlane, workers: list[str]) -> WorkerPoolArgs:
    return WorkerPoolArgs(
        workers=[target(n, f"10.{octet}.0.{31 + i}") for i, n in enumerate(workers)],
        kubernetes=kubernetes(prefix, octet), pool="general",
        bootstrap_token=pulumi.Output.secret(TOKEN), discovery_hash=HASH, control_plane=control_plane,
    )


def harbor_args(prefix: str, octet: int) -> HarborRegistryArgs:
    return HarborRegistryArgs(
        host=target(f"{prefix}-harbor", f"10.{octet}.0.40"),
        config=HarborConfig(host=f"registry.{prefix}.example", installer_sha256="a" * 64, cluster=prefix),
        tls_cert=pem("CERTIFICATE", f"{prefix}-harbor"),
        tls_key=pulumi.Output.secret(pem("PRIVATE KEY", f"{prefix}-harbor")),
        admin_password=pulumi.Output.secret("AdminPassword1"),
        db_password=pulumi.Output.secret("DatabasePassword1"),
    )


def two_of_each() -> None:
    for prefix, octet in (("blue", 31), ("green", 32)):
        HaproxyKeepalivedPair(f"{prefix}-front", pair_args(prefix, octet))
        ExternalEtcd(f"{prefix}-etcd", etcd_args(prefix, octet))
        HarborRegistry(f"{prefix}-harbor", harbor_args(prefix, octet))
        workers = [f"{prefix}-w-0", f"{prefix}-w-1"]
        control_plane = ControlPlane(f"{prefix}-control-plane", control_plane_args(prefix, octet, workers))
        WorkerPool(f"{prefix}-workers", pool_args(prefix, octet, control_plane, workers))


@cache
def composed() -> Run:
    return run_under_mocks(two_of_each)


def test_two_of_each_component_register_unique_urns() -> None:
    run = composed()
    duplicates = sorted({urn for urn in run.urns if run.urns.count(urn) > 1})
    assert not duplicates
    types = [r.type for r in run.graph.resources.values()]
    for component in ("k8s-ha:loadbalancer:HaproxyKeepalivedPair", "k8s-ha:etcd:ExternalEtcd",
                      "k8s-ha:kubernetes:ControlPlane", "k8s-ha:kubernetes:WorkerPool", "k8s-ha:harbor:HarborRegistry"):
        assert types.count(component) == 2, component


def test_each_etcd_health_step_is_named_from_its_component_and_answers_to_the_old_name() -> None:
    graph = composed().graph
    for prefix in ("blue", "green"):
        health = graph.named(f"{prefix}-etcd-health")
        assert graph.by_urn(health.parent).name == f"{prefix}-etcd"
        assert health.alias_names == {LEGACY_HEALTH_NAME}  # an existing stack keeps its step: no replacement
        assert health.inputs["connection"]["host"] == ("10.31.0.11" if prefix == "blue" else "10.32.0.11")


def test_every_child_sits_under_its_own_component() -> None:
    graph = composed().graph
    for step in graph.of_type(COMMAND):
        parent = graph.by_urn(step.parent).name
        assert step.name.split("-")[0] == parent.split("-")[0], (step.name, parent)


@pytest.mark.parametrize("stack", ["Pulumi.dev.yaml", "Pulumi.prod.yaml"])
def test_the_program_renames_nothing(stack: str) -> None:
    """HaCluster names its etcd `etcd`, so the health step keeps the name it always had and no
    resource of the program carries an alias."""
    graph = deployed(stack)
    assert graph.named(LEGACY_HEALTH_NAME).type == COMMAND
    assert [r.name for r in graph.resources.values() if r.alias_names] == []  # type aliases of the SDK aside


# ---- wrong input raises before anything is registered -------------------------------------------


def _raises_before_registering(build: Callable[[], object], match: str) -> None:
    errors: list[ValueError] = []

    def program() -> None:
        with pytest.raises(ValueError, match=match) as caught:
            build()
        errors.append(caught.value)

    run = run_under_mocks(program)
    assert errors
    assert [u for u in run.urns if "::pulumi:pulumi:Stack::" not in u] == [], "nothing may be registered"


def test_etcd_with_two_members_raises_before_registering() -> None:
    def build() -> object:
        args = etcd_args("bad", 40)
        names = [t.name for t in args.hosts[:2]]
        return ExternalEtcd("bad-etcd", ExternalEtcdArgs(
            hosts=args.hosts[:2], settings=args.settings, ca_cert=args.ca_cert,
            member_tls={n: args.member_tls[n] for n in names},
            healthcheck_cert=args.healthcheck_cert, healthcheck_key=args.healthcheck_key,
        ))

    _raises_before_registering(build, r"ExternalEtcdArgs.hosts: 2 members: use 3, 5 or 7\.")


def test_etcd_hosts_that_do_not_match_the_tls_material_raise_before_registering() -> None:
    def build() -> object:
        args = etcd_args("bad", 40)
        return ExternalEtcd("bad-etcd", ExternalEtcdArgs(
            hosts=args.hosts, settings=args.settings, ca_cert=args.ca_cert, member_tls={},
            healthcheck_cert=args.healthcheck_cert, healthcheck_key=args.healthcheck_key,
        ))

    _raises_before_registering(build, r"ExternalEtcdArgs.hosts: hosts \[.*\] do not match the names in member_tls \[\]")


def test_a_pair_of_one_host_twice_raises_before_registering() -> None:
    lb = target("lb", "10.40.0.2")
    _raises_before_registering(lambda: HaproxyKeepalivedPair("bad-front", pair_args("bad", 40, (lb, lb))),
                               "HaproxyKeepalivedPairArgs.hosts: two hosts share a name")


def test_a_worker_the_control_plane_does_not_expect_raises_before_registering() -> None:
    def program() -> None:
        control_plane = ControlPlane("cp", control_plane_args("cp", 41, workers=["cp-w-0"]))
        with pytest.raises(ValueError, match=r"WorkerPoolArgs.workers: \['cp-w-1'\] are not in "
                                             r"ControlPlaneArgs.workers of control plane 'cp'; add them there"):
            WorkerPool("pool", pool_args("cp", 41, control_plane, ["cp-w-0", "cp-w-1"]))

    graph = run_under_mocks(program).graph
    assert not graph.of_type("k8s-ha:kubernetes:WorkerPool")
    assert not [r for r in graph.resources.values() if r.name.startswith("cp-w-")]


# ---- machine addresses that are Outputs --------------------------------------------------------


def test_an_ssh_address_from_another_provider_reaches_the_connection() -> None:
    mocks = CompositionMocks({f"far-etcd-{i}-vm": f"198.51.100.{11 + i}" for i in range(3)})

    def program() -> None:
        args = etcd_args("far", 42)
        hosts = [target(t.name, str(t.ip), address=Machine(f"{t.name}-vm").public_ip) for t in args.hosts]
        ExternalEtcd("far-etcd", ExternalEtcdArgs(
            hosts=hosts, settings=args.settings, ca_cert=args.ca_cert, member_tls=args.member_tls,
            healthcheck_cert=args.healthcheck_cert, healthcheck_key=args.healthcheck_key,
        ))

    graph = run_under_mocks(program, mocks).graph
    member = graph.named("far-etcd-1-etcd-member")
    assert member.inputs["connection"]["host"] == "198.51.100.12"
    # The cluster address stays the one given as `ip`.
    assert "export K8SHA_ETCD_ENDPOINTS=https://10.42.0.11:2379,https://10.42.0.12:2379," in member.inputs["stdin"]
    assert graph.depends_on(member, graph.named("far-etcd-1-vm"))  # the step waits for the machine


def test_an_ssh_address_output_that_is_not_an_address_fails_once_known() -> None:
    def program() -> object:
        host = target("odd", "10.43.0.11", address=Machine("odd-vm").public_ip)
        return host.access.address

    with pytest.raises(ValueError, match="target odd: address 'not an address!' is neither an IP address"):
        run_under_mocks(program, CompositionMocks({"odd-vm": "not an address!"}))


def test_plain_addresses_are_checked_at_once() -> None:
    with pytest.raises(ValueError, match="target a: address 'no such host!' is neither"):
        target("a", "10.0.0.1", address="no such host!")
    with pytest.raises(ValueError, match=r"target a: ip '10.0.0' is not an IPv4 address"):
        target("a", "10.0.0")
    with pytest.raises(ValueError, match="the cluster address `ip` must be known"):
        Target.ssh("a", pulumi.Output.from_input("10.0.0.1"), host_key="k", private_key="p")  # type: ignore[arg-type]
    assert target("a", "10.0.0.1", address="a.example.net").access.address == "a.example.net"


# ---- Harbor's proxy cache and an image registry mirror for the same images ----------------------


def test_a_control_plane_pulling_through_harbor_and_a_mirror_raises_before_registering() -> None:
    """The Kubernetes config refuses itself, with the stack's rule and path."""
    def build() -> object:
        args = control_plane_args("both", 44, workers=[])
        both = replace(args.kubernetes, registry=RegistryMirror("10.44.0.40", proxy_cache=True),
                       artifacts=ArtifactSettings(imageRegistry="10.44.0.5:5000"))
        return ControlPlane("both", replace(args, kubernetes=both, registry_certificate=pem("CERTIFICATE", "h")))

    _raises_before_registering(build, r"KubernetesConfig.artifacts.imageRegistryPrecedence: images from "
                                      r"\['quay.io', 'registry.k8s.io'\] would come both through Harbor's proxy "
                                      r"cache \(harbor.proxyCache\) and from the image registry mirror 10.44.0.5:5000")
