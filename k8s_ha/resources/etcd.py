"""ExternalEtcd: 3/5/7 TLS members, then one cluster-wide health gate.

Members start in parallel (each step only needs its own host); the health step waits for all of
them and fails the deployment clearly when quorum is not reached, so the control plane never
starts on a broken database. Removing a member from the stack runs its step's delete action
(`etcdctl member remove`) before its VM goes: the step depends on the host, so Pulumi deletes it first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import pulumi
import pulumi_command as command

from k8s_ha.model.errors import Problem
from k8s_ha.model.spec import EtcdSpec, NodeSpec, Role, below_minimum
from k8s_ha.model.validation import PlainCheck, refuse_unknown_fields
from k8s_ha.render import material as m
from k8s_ha.render.etcd import (
    EtcdConfig,
    EtcdMember,
    EtcdSettings,
    etcd_endpoints,
    etcd_health_step,
    etcd_member_step,
    etcd_restore_step,
    etcd_restored_step,
)
from k8s_ha.render.members import nodes_of
from k8s_ha.resources.remote import renamed_from, resolve, secret
from k8s_ha.resources.target import Target, claim_machines, named

DEFAULT_DISK_GIB = 10
# What the health step was called before it was named from its component: existing stacks alias it.
LEGACY_HEALTH_NAME = "etcd-health"


@refuse_unknown_fields
@dataclass(frozen=True)
class MemberTls:
    """One member's server certificate (clients) and peer certificate (Raft), with their keys."""

    server_cert: pulumi.Input[str]
    server_key: pulumi.Input[str]
    peer_cert: pulumi.Input[str]
    peer_key: pulumi.Input[str]


@refuse_unknown_fields
@dataclass(frozen=True)
class ExternalEtcdArgs:
    """The member machines (the first runs the health gate), settings and TLS material.

    `healthcheck_*` is the client identity the members' own etcdctl calls use (health gate,
    backups, member add/remove); `client_*`, if given, is exported for the apiservers.
    """

    hosts: Sequence[Target]
    settings: EtcdSettings
    ca_cert: pulumi.Input[str]
    member_tls: Mapping[str, MemberTls]
    healthcheck_cert: pulumi.Input[str]
    healthcheck_key: pulumi.Input[str]
    client_cert: pulumi.Input[str] | None = None
    client_key: pulumi.Input[str] | None = None
    disk_gib: Mapping[str, int] = field(default_factory=dict)  # sizes the backend quota; default 10
    after: Sequence[pulumi.Resource] = ()

    def __post_init__(self) -> None:
        """Wrong input fails here, so a component never starts registering from it: the stack's
        rules for etcd's members (3, 5 or 7, named and addressed as nodes are, disk sizes within
        bounds); the settings checked themselves when they were built."""
        hosts = named(self.hosts, "ExternalEtcdArgs.hosts", expected=list(self.member_tls),
                      expected_what="the names in member_tls")
        for host in self.disk_gib:
            if host not in hosts:
                raise ValueError(f"ExternalEtcdArgs.disk_gib: no host named {host!r}; hosts are {sorted(hosts)}")
        check = PlainCheck(type(self).__name__, python_names=True)
        check.fields(EtcdSpec, {"nodes": nodes_of(self.hosts)}, renamed={"nodes": "hosts"})
        for host, size in self.disk_gib.items():
            found = len(check.problems)
            typed = check.fields(NodeSpec, {"disk_gib": size}, renamed={"disk_gib": host}, under="disk_gib")
            if len(check.problems) == found and (small := below_minimum(Role.ETCD, "disk_gib", typed[host])):
                check.add([Problem(host, small)], under="disk_gib")
        check.done()


def cluster_config(args: ExternalEtcdArgs) -> EtcdConfig:
    """The members and settings as plain values."""
    return EtcdConfig(
        members=tuple(EtcdMember(t.name, t.ip, args.disk_gib.get(t.name, DEFAULT_DISK_GIB)) for t in args.hosts),
        settings=args.settings,
    )


class ExternalEtcd(pulumi.ComponentResource):
    members: dict[str, command.remote.Command]
    health: command.remote.Command
    # With settings.restore: each member's restore (all at once, after the members), and the health
    # gate after them, which marks the restored cluster; what the apiservers' restart waits for.
    restores: dict[str, command.remote.Command]
    restored: command.remote.Command | None

    def __init__(self, name: str, args: ExternalEtcdArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        config = cluster_config(args)
        claim_machines("an etcd member", f"ExternalEtcd {name!r}", args.hosts)
        super().__init__("k8s-ha:etcd:ExternalEtcd", name, None, opts)
        shared = {
            m.ETCD_CA: pulumi.Output.from_input(args.ca_cert),
            m.ETCD_HEALTHCHECK_CERT: pulumi.Output.from_input(args.healthcheck_cert),
            m.ETCD_HEALTHCHECK_KEY: secret(args.healthcheck_key),
        }
        self.members = {}
        for host in args.hosts:
            tls = args.member_tls[host.name]
            material = resolve({
                **shared,
                m.etcd_server_cert(host.name): pulumi.Output.from_input(tls.server_cert),
                m.etcd_server_key(host.name): secret(tls.server_key),
                m.etcd_peer_cert(host.name): pulumi.Output.from_input(tls.peer_cert),
                m.etcd_peer_key(host.name): secret(tls.peer_key),
            })
            self.members[host.name] = host.step(
                f"{host.name}-etcd-member", partial(etcd_member_step, config, host), material,
                parent=self, after=args.after,
            )
        self.health = args.hosts[0].step(
            f"{name}-health", partial(etcd_health_step, config), resolve(shared),
            parent=self, after=list(self.members.values()), aliases=renamed_from(LEGACY_HEALTH_NAME, f"{name}-health"),
        )
        self.restores, self.restored = {}, None
        if config.settings.restore is not None:
            self.restores = {
                host.name: host.step(f"{host.name}-etcd-restore", partial(etcd_restore_step, config, host),
                                     resolve(shared), parent=self, after=[self.health])
                for host in args.hosts
            }
            self.restored = args.hosts[0].step(
                f"{name}-restored", partial(etcd_restored_step, config), resolve(shared), parent=self,
                after=list(self.restores.values()))
        self.endpoints = pulumi.Output.from_input(etcd_endpoints(config.members))
        self.client = {
            "ca": pulumi.Output.from_input(args.ca_cert),
            "cert": pulumi.Output.from_input(args.client_cert or args.healthcheck_cert),
            "key": secret(args.client_key or args.healthcheck_key),
        }
        self.register_outputs({"endpoints": self.endpoints})
