"""ControlPlane: kubeadm masters behind the VIP on the external etcd.

Every master is prepared in parallel (containerd, kubeadm/kubelet/kubectl). Then each master's
upgrade step runs, one master at a time from the first: on a new cluster they change nothing;
after a change of `versions.kubernetes` they upgrade the running control plane in kubeadm's order
(init's configuration names the version, so init runs after the first master's upgrade; a join's
does not, so joins do not wait for the chain). `kubeadm init` runs on the first once `after` is
done (in a full cluster: etcd healthy, both load balancers up, since init talks to the VIP;
Harbor's caches defined). The other masters then join in parallel: with external etcd a join does
not add an etcd member, so kubeadm's one-at-a-time rule for stacked etcd does not apply (see
docs/kubernetes.md). The token, the certificate key and the discovery hash come from the program,
never from kubeadm's output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import pulumi
import pulumi_command as command

from k8s_ha.model.certificates import step_report
from k8s_ha.model.spec import ControlPlaneSpec
from k8s_ha.model.validation import PlainCheck, refuse_unknown_fields
from k8s_ha.render import material as m
from k8s_ha.render.kubernetes import (
    ControlPlaneConfig,
    KubernetesConfig,
    NodeEndpoint,
    admin_kubeconfig,
    control_plane_certs_step,
    control_plane_init_step,
    control_plane_join_step,
    control_plane_restart_step,
    k8s_node_step,
    k8s_upgrade_step,
)
from k8s_ha.render.members import nodes_of
from k8s_ha.resources.remote import resolve, secret
from k8s_ha.resources.target import Target, claim_machines, named

# What a master or a worker is to its machine: one ControlPlane or WorkerPool makes it that.
KUBERNETES_NODE = "a Kubernetes node"


@refuse_unknown_fields
@dataclass(frozen=True)
class ControlPlaneArgs:
    """The masters (the first runs `kubeadm init`), the cluster's Kubernetes config, and the PKI.

    Every certificate and key is made by the caller, so joins never read kubeadm's output: the
    discovery hash is that of `ca_cert`'s public key, the token and certificate key are known.
    """

    masters: Sequence[Target]
    kubernetes: KubernetesConfig
    ca_cert: pulumi.Input[str]
    ca_key: pulumi.Input[str]
    front_proxy_ca_cert: pulumi.Input[str]
    front_proxy_ca_key: pulumi.Input[str]
    service_account_key: pulumi.Input[str]
    service_account_pub: pulumi.Input[str]
    bootstrap_token: pulumi.Input[str]  # [a-z0-9]{6}.[a-z0-9]{16}
    certificate_key: pulumi.Input[str]  # 32 bytes as hex: encrypts the uploaded control-plane certificates
    discovery_hash: pulumi.Input[str]  # sha256:<hex of ca_cert's SubjectPublicKeyInfo>
    etcd_ca_cert: pulumi.Input[str]
    etcd_client_cert: pulumi.Input[str]  # kube-apiserver's client certificate for etcd
    etcd_client_key: pulumi.Input[str]
    admin_cert: pulumi.Input[str]  # for the exported kubeconfig (O=kubeadm:cluster-admins)
    admin_key: pulumi.Input[str]
    # The certificate Harbor serves; needed when `kubernetes.registry` is set.
    registry_certificate: pulumi.Input[str] | None = None
    # Failure domain per master (its topology.kubernetes.io/zone); a master not named is its own.
    failure_domains: Mapping[str, str] = field(default_factory=dict)
    # Every worker that joins through the first master's token, in any WorkerPool: a change re-runs
    # init, refreshing the token. A WorkerPool refuses a worker that is not listed here.
    workers: Sequence[str] = ()
    after: Sequence[pulumi.Resource] = ()
    # After an etcd restore: the step the restored etcd is healthy after, and the snapshot's
    # sha256; each master's control plane is restarted against it, one at a time.
    etcd_restored: pulumi.Resource | None = None
    etcd_snapshot_sha256: str | None = None

    def __post_init__(self) -> None:
        """Wrong input fails here, so a component never starts registering from it: the stack's
        rules for its masters (2 to 7, named and addressed as nodes are) and what the stack
        guarantees by its shape (workers that are not masters, domains of known masters)."""
        masters = named(self.masters, "ControlPlaneArgs.masters")
        check = PlainCheck(type(self).__name__, python_names=True)
        check.fields(ControlPlaneSpec, {"nodes": nodes_of(self.masters)}, renamed={"nodes": "masters"})
        check.done()
        check_node_registry(self.kubernetes, self.registry_certificate, "ControlPlaneArgs")
        check_domains(self.failure_domains, masters, "ControlPlaneArgs.failure_domains", "master")
        if isinstance(self.workers, str):
            raise ValueError(f"ControlPlaneArgs.workers: {self.workers!r} is one string; give a list of worker names")
        both = sorted(set(self.workers) & set(masters))
        if both:
            raise ValueError(f"ControlPlaneArgs.workers: {both} are masters; list only the workers here")


def check_node_registry(kubernetes: KubernetesConfig, registry_certificate: pulumi.Input[str] | None,
                        args: str) -> None:
    """Nodes that pull through Harbor need the certificate it serves (that their images do not
    come both through Harbor's proxy cache and from a mirror, KubernetesConfig checked itself)."""
    if kubernetes.registry is not None and registry_certificate is None:
        raise ValueError(f"{args}.registry_certificate: the nodes pull through Harbor at "
                         f"{kubernetes.registry.host}; give the certificate Harbor serves")


def check_domains(domains: Mapping[str, str], nodes: Mapping[str, Target], path: str, role: str) -> None:
    """Refuse failure domains for nodes that are not there (a misspelt name would go unnoticed)."""
    for node, domain in domains.items():
        if node not in nodes:
            raise ValueError(f"{path}: no {role} named {node!r}; {role}s are {sorted(nodes)}")
        if not domain:
            raise ValueError(f"{path}.{node}: empty; give the failure domain's name")


def node_material(kubernetes: KubernetesConfig,
                  registry_certificate: pulumi.Input[str] | None) -> dict[str, pulumi.Output[str]]:
    """What node preparation reads: Harbor's certificate when the nodes pull through Harbor (the
    Args made sure it is there)."""
    if kubernetes.registry is None or registry_certificate is None:
        return {}
    return {m.HARBOR_CERT: pulumi.Output.from_input(registry_certificate)}


def prepare_node(target: Target, kubernetes: KubernetesConfig, material: pulumi.Output[dict[str, str]],
                 parent: pulumi.Resource) -> command.remote.Command:
    """Node preparation shared by masters and workers; needs only the machine and the config."""
    return target.step(f"{target.name}-k8s-node", partial(k8s_node_step, kubernetes, target), material,
                       parent=parent)


class ControlPlane(pulumi.ComponentResource):
    prepared: dict[str, command.remote.Command]
    upgrades: dict[str, command.remote.Command]  # in upgrade order
    joins: dict[str, command.remote.Command]
    init: command.remote.Command
    first: Target

    def __init__(self, name: str, args: ControlPlaneArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        masters = tuple(t.name for t in args.masters)
        kubernetes = args.kubernetes
        prepare = resolve(node_material(kubernetes, args.registry_certificate))
        claim_machines(KUBERNETES_NODE, f"ControlPlane {name!r}", args.masters)
        super().__init__("k8s-ha:kubernetes:ControlPlane", name, None, opts)
        config = ControlPlaneConfig(kubernetes, masters, tuple(args.workers))
        self.component_name = name
        self.joining: frozenset[str] = frozenset(args.workers)  # the workers init refreshes the token for

        def node(target: Target) -> NodeEndpoint:
            return NodeEndpoint(target.name, target.ip, args.failure_domains.get(target.name, target.name))

        joining = {
            m.BOOTSTRAP_TOKEN: secret(args.bootstrap_token),
            m.CERTIFICATE_KEY: secret(args.certificate_key),
            m.DISCOVERY_HASH: pulumi.Output.from_input(args.discovery_hash),
            m.ETCD_CA: pulumi.Output.from_input(args.etcd_ca_cert),
            m.APISERVER_ETCD_CERT: pulumi.Output.from_input(args.etcd_client_cert),
            m.APISERVER_ETCD_KEY: secret(args.etcd_client_key),
        }
        pki = {
            m.KUBERNETES_CA: pulumi.Output.from_input(args.ca_cert),
            m.KUBERNETES_CA_KEY: secret(args.ca_key),
            m.FRONT_PROXY_CA: pulumi.Output.from_input(args.front_proxy_ca_cert),
            m.FRONT_PROXY_CA_KEY: secret(args.front_proxy_ca_key),
            m.SERVICE_ACCOUNT_KEY: secret(args.service_account_key),
            m.SERVICE_ACCOUNT_PUB: pulumi.Output.from_input(args.service_account_pub),
        }
        self.prepared = {t.name: prepare_node(t, kubernetes, prepare, self) for t in args.masters}
        first, *others = args.masters
        self.first = first
        self.upgrades = {}
        for t in args.masters:
            role = "first" if t is first else "control-plane"
            self.upgrades[t.name] = t.step(
                f"{t.name}-k8s-upgrade", partial(k8s_upgrade_step, kubernetes, t, role), resolve({}),
                parent=self, after=[self.prepared[t.name], *list(self.upgrades.values())[-1:]])
        self.init = first.step(
            f"{first.name}-k8s-init", partial(control_plane_init_step, config, node(first)),
            resolve({**pki, **joining}), parent=self,
            after=[self.prepared[first.name], self.upgrades[first.name], *args.after],
        )
        # After etcd.restore, each master's control plane restarted against the restored etcd, one
        # master at a time: the first after its init, the others before their joins, so that a
        # master that joins later (while the setting is in the stack) starts on the restored data
        # and is not restarted for nothing (its step finds no control plane and marks it done).
        self.restarts: dict[str, command.remote.Command] = {}
        if args.etcd_restored is not None and args.etcd_snapshot_sha256:
            for t in args.masters:
                self.restarts[t.name] = t.step(
                    f"{t.name}-k8s-restart-control-plane",
                    partial(control_plane_restart_step, kubernetes, t, args.etcd_snapshot_sha256), resolve({}),
                    parent=self, after=[args.etcd_restored, self.init, *list(self.restarts.values())[-1:]])
        def restarted(name: str) -> list[command.remote.Command]:
            return [self.restarts[name]] if name in self.restarts else []

        join_material = resolve(joining)
        self.joins = {
            t.name: t.step(f"{t.name}-k8s-join", partial(control_plane_join_step, kubernetes, node(t)), join_material,
                           parent=self, after=[self.prepared[t.name], self.init, *restarted(t.name)])
            for t in others
        }
        # Certificates, one master at a time after its join, every master's upgrade and its restart:
        # kubeadm's renewed when due, a control plane restarted onto renewed files, every expiry
        # reported. Never beside an upgrade, so that two apiservers never restart at once.
        self.certs: dict[str, command.remote.Command] = {}
        certs_material = resolve({m.APISERVER_ETCD_CERT: pulumi.Output.from_input(args.etcd_client_cert)})
        last_upgrade = self.upgrades[args.masters[-1].name]
        for t in args.masters:
            self.certs[t.name] = t.step(
                f"{t.name}-k8s-certs", partial(control_plane_certs_step, kubernetes, t), certs_material,
                parent=self, after=[self.joins.get(t.name, self.init), last_upgrade, *restarted(t.name),
                                    *list(self.certs.values())[-1:]])
        # The end of the masters' chain: no apiserver restarts after it in this `up`. The workers'
        # upgrades (drains through the VIP) and the add-ons kubeadm rewrites wait for it (the
        # Kubernetes provider does not retry a request an apiserver restart cut).
        self.upgraded: command.remote.Command = self.certs[args.masters[-1].name]
        # Each master's certificates as "<master>/<name>" -> notAfter (the stack's `certificates`).
        self.certificate_expiries: pulumi.Output[dict[str, str]] = pulumi.Output.all(
            *[step.stdout for step in self.certs.values()]).apply(
            lambda outs: {f"{master}/{name}": end for master, out in zip(self.certs, outs, strict=True)
                          for name, end in step_report(out).items()})
        self.kubeconfig: pulumi.Output[str] = secret(
            pulumi.Output.all(args.ca_cert, args.admin_cert, args.admin_key).apply(
                lambda pem: admin_kubeconfig(kubernetes, pem[0], pem[1], pem[2])
            )
        )
        self.register_outputs({})
