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

from k8s_ha.render import material as m
from k8s_ha.render.loadbalancer import FrontDoor, LoadBalancerConfig, loadbalancer_step
from k8s_ha.render.members import endpoints
from k8s_ha.resources.remote import resolve, secret
from k8s_ha.resources.target import Target, named


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
        """Wrong input fails here, so a component never starts registering from it."""
        hosts = named(self.hosts, "HaproxyKeepalivedPairArgs.hosts")
        if len(hosts) != 2:
            raise ValueError(f"HaproxyKeepalivedPairArgs.hosts: a keepalived pair needs exactly two hosts, "
                             f"got {sorted(hosts)}")
        door = self.front_door
        vip = door.vip
        backends = (*door.apiservers, *door.ingress, *([door.harbor] if door.harbor is not None else []))
        taken = {t.name: t.ip for t in self.hosts} | {e.name: e.ip for e in backends}
        for holder, ip in taken.items():
            if ip == vip:
                raise ValueError(f"HaproxyKeepalivedPairArgs.front_door.vip: {vip} is the address of {holder}; "
                                 "the VIP must be an address no machine has, since keepalived moves it between "
                                 "the pair")


def pair_config(args: HaproxyKeepalivedPairArgs) -> LoadBalancerConfig:
    """The pair and what it serves as plain values."""
    first, second = endpoints(args.hosts)
    return LoadBalancerConfig(args.front_door, (first, second))


class HaproxyKeepalivedPair(pulumi.ComponentResource):
    steps: dict[str, command.remote.Command]

    def __init__(self, name: str, args: HaproxyKeepalivedPairArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        config = pair_config(args)
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
