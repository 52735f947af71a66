"""WorkerPool: workers are prepared and joined in parallel, all waiting only on `kubeadm init`.

Each worker also has a membership step on the first master: it waits for the Node to be Ready and
sets its labels; on removal it drains and deletes the Node before the worker is reset and its VM
goes (Pulumi deletes in reverse dependency order), so workers never hold credentials that can
delete Nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import pulumi
import pulumi_command as command

from k8s_ha.model.spec import StackSpec
from k8s_ha.placement.place import Placement
from k8s_ha.render.kubernetes import worker_join_step, worker_membership_step
from k8s_ha.resources.control_plane import ControlPlane, prepare_node
from k8s_ha.resources.remote import MaterialViews
from k8s_ha.resources.vm import Host


class WorkerPool(pulumi.ComponentResource):
    joins: dict[str, command.remote.Command]
    memberships: dict[str, command.remote.Command]

    def __init__(
        self,
        name: str,
        spec: StackSpec,
        placement: Placement,
        hosts: list[Host],
        material: MaterialViews,
        control_plane: ControlPlane,
        cni: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("k8s-ha:kubernetes:WorkerPool", name, None, opts)
        self.joins, self.memberships = {}, {}
        master = control_plane.first_host
        for host in hosts:
            node = host.node
            prepared = prepare_node(host, spec, placement, material, self)
            join = host.step(
                f"{node.name}-k8s-join", partial(worker_join_step, spec, placement, node), material,
                parent=self, after=[prepared, control_plane.init],
            )
            self.joins[node.name] = join
            self.memberships[node.name] = master.step(
                f"{node.name}-k8s-membership", partial(worker_membership_step, spec, placement, node), material,
                parent=self, after=[join, *cni],
            )
        self.register_outputs({})
