"""ControlPlane: kubeadm masters behind the VIP on the external etcd.

Every master is prepared in parallel (containerd, kubeadm/kubelet/kubectl). `kubeadm init` runs on
the first once etcd is healthy and both load balancers are up (init talks to the VIP). The other
masters then join in parallel: with external etcd a join does not add an etcd member, so kubeadm's
one-at-a-time rule for stacked etcd does not apply (see docs/kubernetes.md). The token, the
certificate key and the discovery hash come from the program, never from kubeadm's output.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import pulumi
import pulumi_command as command

from k8s_ha.model.spec import StackSpec
from k8s_ha.placement.place import Placement
from k8s_ha.render import material as m
from k8s_ha.render.kubernetes import (
    admin_kubeconfig,
    control_plane_init_step,
    control_plane_join_step,
    k8s_node_step,
)
from k8s_ha.resources.pki import ClusterPki
from k8s_ha.resources.remote import MaterialViews, secret
from k8s_ha.resources.vm import Host


def prepare_node(host: Host, spec: StackSpec, placement: Placement, material: MaterialViews,
                 parent: pulumi.Resource) -> command.remote.Command:
    """Node preparation shared by masters and workers; needs only the host itself."""
    node = host.node
    return host.step(f"{node.name}-k8s-node", partial(k8s_node_step, spec, placement, node), material, parent=parent)


class ControlPlane(pulumi.ComponentResource):
    prepared: dict[str, command.remote.Command]
    joins: dict[str, command.remote.Command]
    init: command.remote.Command

    def __init__(
        self,
        name: str,
        spec: StackSpec,
        placement: Placement,
        hosts: list[Host],
        material: MaterialViews,
        pki: ClusterPki,
        prerequisites: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("k8s-ha:kubernetes:ControlPlane", name, None, opts)
        self.prepared = {h.node.name: prepare_node(h, spec, placement, material, self) for h in hosts}
        first, others = hosts[0], hosts[1:]
        self.first_host = first
        self.init = first.step(
            f"{first.node.name}-k8s-init", partial(control_plane_init_step, spec, placement, first.node), material,
            parent=self, after=[self.prepared[first.node.name], *prerequisites],
        )
        self.joins = {}
        for host in others:
            node = host.node
            self.joins[node.name] = host.step(
                f"{node.name}-k8s-join", partial(control_plane_join_step, spec, placement, node), material,
                parent=self, after=[self.prepared[node.name], self.init],
            )
        self.kubeconfig: pulumi.Output[str] = secret(
            pulumi.Output.all(material.shared, pki.admin_cert, pki.admin_key).apply(
                lambda args: admin_kubeconfig(spec, args[0][m.KUBERNETES_CA], args[1], args[2])
            )
        )
        self.register_outputs({})
