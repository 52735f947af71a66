"""HaproxyKeepalivedPair: two HAProxy nodes sharing a keepalived VRRP VIP in front of the apiservers.

Each LB runs one step (HAProxy + keepalived config, health check, sysctl). The step's bundle is
rendered from the plan, so adding or removing a control-plane node changes both bundles and
pulumi-command re-runs them in place: HAProxy reloads, no VM is touched.
"""

from __future__ import annotations

from functools import partial

import pulumi
import pulumi_command as command

from k8s_ha.model.spec import StackSpec
from k8s_ha.placement.place import Placement
from k8s_ha.render.loadbalancer import loadbalancer_step
from k8s_ha.resources.remote import MaterialViews
from k8s_ha.resources.vm import Host


class HaproxyKeepalivedPair(pulumi.ComponentResource):
    steps: dict[str, command.remote.Command]

    def __init__(
        self,
        name: str,
        spec: StackSpec,
        placement: Placement,
        hosts: list[Host],
        material: MaterialViews,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("k8s-ha:loadbalancer:HaproxyKeepalivedPair", name, None, opts)
        self.steps = {}
        for host in hosts:
            node = host.node
            self.steps[node.name] = host.step(
                f"{node.name}-loadbalancer", partial(loadbalancer_step, spec, placement, node), material, parent=self
            )
        self.vip = pulumi.Output.from_input(str(spec.network.vip))
        self.endpoint = pulumi.Output.from_input(f"https://{spec.network.vip}:6443")
        self.register_outputs({"vip": self.vip, "endpoint": self.endpoint})
