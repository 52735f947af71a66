"""HaproxyKeepalivedPair: two HAProxy nodes sharing a keepalived VRRP VIP in front of the apiservers.

Each LB runs one step (HAProxy + keepalived config, health check, sysctl). The step's bundle is
rendered from the Args, so adding or removing an apiserver changes both bundles and pulumi-command
re-runs them in place: HAProxy reloads, no VM is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import pulumi
import pulumi_command as command

from k8s_ha.model.spec import LoadBalancerSpec
from k8s_ha.model.validation import PlainCheck, refuse_unknown_fields
from k8s_ha.render import material as m
from k8s_ha.render.loadbalancer import FrontDoor, LoadBalancerConfig, loadbalancer_step, pair_problems
from k8s_ha.render.members import endpoints, nodes_of
from k8s_ha.resources.remote import resolve, secret
from k8s_ha.resources.target import Target, claim_machines, named


@refuse_unknown_fields
@dataclass(frozen=True)
class HaproxyKeepalivedPairArgs:
    """The two machines (the first is the initial VRRP MASTER), what they serve, and their secrets."""

    hosts: tuple[Target, Target]
    front_door: FrontDoor
    kubernetes_ca: pulumi.Input[str]  # HAProxy verifies each apiserver's /readyz against it
    stats_password: pulumi.Input[str]
    vrrp_password: pulumi.Input[str]  # used with VRRPv2 only (v3 has no authentication)
    after: Sequence[pulumi.Resource] = field(default=())

    def __post_init__(self) -> None:
        """Wrong input fails here, so a component never starts registering from it: the stack's
        rules for its load balancers (two, named as nodes are, on the VIP's subnet, no address used
        twice, so the VIP is no machine's own)."""
        named(self.hosts, "HaproxyKeepalivedPairArgs.hosts")
        check = PlainCheck(type(self).__name__, python_names=True)
        check.fields(LoadBalancerSpec, {"nodes": nodes_of(self.hosts)}, renamed={"nodes": "hosts"})
        if not check.problems:
            check.add(pair_problems(self.front_door, self.hosts, "front_door", "hosts"))
        check.done()


def pair_config(args: HaproxyKeepalivedPairArgs) -> LoadBalancerConfig:
    """The pair and what it serves as plain values."""
    first, second = endpoints(args.hosts)
    return LoadBalancerConfig(args.front_door, (first, second))


class HaproxyKeepalivedPair(pulumi.ComponentResource):
    steps: dict[str, command.remote.Command]

    def __init__(self, name: str, args: HaproxyKeepalivedPairArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        config = pair_config(args)
        claim_machines("a load balancer", f"HaproxyKeepalivedPair {name!r}", args.hosts)
        super().__init__("k8s-ha:loadbalancer:HaproxyKeepalivedPair", name, None, opts)
        material = resolve({
            m.KUBERNETES_CA: pulumi.Output.from_input(args.kubernetes_ca),
            m.HAPROXY_STATS_PASSWORD: secret(args.stats_password),
            m.VRRP_PASSWORD: secret(args.vrrp_password),
        })
        self.steps = {
            host.name: host.step(f"{host.name}-loadbalancer", partial(loadbalancer_step, config, host), material,
                                 parent=self, after=args.after)
            for host in args.hosts
        }
        door = args.front_door
        self.vip = pulumi.Output.from_input(str(door.vip))
        self.endpoint = pulumi.Output.from_input(f"https://{door.vip}:6443")
        self.register_outputs({"vip": self.vip, "endpoint": self.endpoint})
