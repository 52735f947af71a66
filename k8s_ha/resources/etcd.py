"""ExternalEtcd: 3/5/7 TLS members, then one cluster-wide health gate.

Members start in parallel (each step only needs its own host); the health step waits for all of
them and fails the deployment clearly when quorum is not reached, so the control plane never
starts on a broken database. Removing a member from the stack runs its step's delete action
(`etcdctl member remove`) before its VM goes: the step depends on the host, so Pulumi deletes it first.
"""

from __future__ import annotations

from functools import partial

import pulumi
import pulumi_command as command

from k8s_ha.model.spec import StackSpec
from k8s_ha.placement.place import Placement
from k8s_ha.render import material as m
from k8s_ha.render.etcd import etcd_endpoints, etcd_health_step, etcd_member_step
from k8s_ha.resources.remote import MaterialViews, secret
from k8s_ha.resources.vm import Host


class ExternalEtcd(pulumi.ComponentResource):
    members: dict[str, command.remote.Command]
    health: command.remote.Command

    def __init__(
        self,
        name: str,
        spec: StackSpec,
        placement: Placement,
        hosts: list[Host],
        material: MaterialViews,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("k8s-ha:etcd:ExternalEtcd", name, None, opts)
        self.members = {}
        for host in hosts:
            node = host.node
            self.members[node.name] = host.step(
                f"{node.name}-etcd-member", partial(etcd_member_step, spec, placement, node), material, parent=self
            )
        first = hosts[0]
        self.health = first.step(
            "etcd-health", partial(etcd_health_step, spec, placement), material,
            parent=self, after=list(self.members.values()),
        )
        self.endpoints = pulumi.Output.from_input(etcd_endpoints(placement))
        self.client = {
            "ca": material.shared.apply(lambda mat: mat[m.ETCD_CA]),
            "cert": material.shared.apply(lambda mat: mat[m.APISERVER_ETCD_CERT]),
            "key": secret(material.shared.apply(lambda mat: mat[m.APISERVER_ETCD_KEY])),
        }
        self.register_outputs({"endpoints": self.endpoints})
