"""haproxy.cfg, keepalived.conf and the load-balancer step for each of the two LB nodes.

Everything they need is in a `LoadBalancerConfig` of plain values; `loadbalancer_config` derives it
from a stack, and `HaproxyKeepalivedPair` takes one directly when used on its own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from k8s_ha.model import timers
from k8s_ha.model.errors import Problem
from k8s_ha.model.spec import (
    ClusterSettings,
    HaproxyCheck,
    HaproxySettings,
    IngressFrontend,
    LoadBalancerSpec,
    NodeNetwork,
    NodeSpec,
    Role,
    StackSpec,
    address_problems,
    derived_virtual_router_id,
)
from k8s_ha.model.validation import PlainCheck, refuse_unknown_fields
from k8s_ha.placement.place import Placement
from k8s_ha.render import material as m
from k8s_ha.render.members import Endpoint, Member, endpoints, nodes_of
from k8s_ha.render.steps import HostFile, Step
from k8s_ha.render.templating import read, render

CHECK_SCRIPT = "/usr/local/libexec/k8s-ha/check-haproxy"
KEEPALIVED_DROP_IN = "/etc/systemd/system/keepalived.service.d/k8s-ha.conf"
HAPROXY_DROP_IN = "/etc/systemd/system/haproxy.service.d/k8s-ha.conf"
MASTER_PRIORITY, BACKUP_PRIORITY = 150, 100


@refuse_unknown_fields
@dataclass(frozen=True)
class FrontDoor:
    """What the pair serves: the VIP on its subnet, VRRP and HAProxy settings, and the backends."""

    vip: ipaddress.IPv4Address
    prefix: int
    apiservers: tuple[Endpoint, ...]
    cluster: str = "k8s-ha"
    interface: str = "eth0"
    virtual_router_id: int | None = None  # None: derived from the cluster name
    vrrp_version: Literal[2, 3] = 3
    advert_interval_ms: int = timers.ADVERT_INTERVAL_MS
    nopreempt: bool = False
    haproxy: HaproxySettings = field(default_factory=HaproxySettings)
    haproxy_check: HaproxyCheck = field(default_factory=HaproxyCheck)
    harbor: Endpoint | None = None
    ingress: tuple[Endpoint, ...] = ()
    ingress_ports: IngressFrontend = field(default_factory=IngressFrontend)

    def __post_init__(self) -> None:
        """The stack file's rules for the same settings (loadBalancer, network.vip and .interface,
        cluster.name, the address rule), so a library user meets them here rather than in a
        failed step on the load balancers. Addresses given as text are kept as addresses."""
        check = PlainCheck(type(self).__name__)
        typed = check.fields(LoadBalancerSpec, {
            "virtual_router_id": self.virtual_router_id, "vrrp_version": self.vrrp_version,
            "advert_interval_ms": self.advert_interval_ms, "nopreempt": self.nopreempt, "haproxy": self.haproxy,
            "haproxy_check": self.haproxy_check, "ingress": self.ingress_ports,
        }, renamed={"ingress": "ingress_ports"})
        typed |= check.fields(NodeNetwork, {"vip": self.vip, "interface": self.interface})
        check.fields(ClusterSettings, {"name": self.cluster}, renamed={"name": "cluster"})
        backends = {"apiservers": self.apiservers, "ingress": self.ingress}
        typed |= {key: _checked_endpoints(check, key, nodes) for key, nodes in backends.items()}
        if self.harbor is not None:
            typed["harbor"] = _checked_endpoints(check, "harbor", (self.harbor,))[0]
        check.keep(self, typed)
        addresses = [self.vip, *(ip for _, ip in self.backends())]
        if all(isinstance(ip, ipaddress.IPv4Address) for ip in addresses):  # else refused as they are
            check.add(_network_problems(self))
        check.done()

    @property
    def network(self) -> ipaddress.IPv4Network:
        """The VIP's subnet: the load balancers sit on it, keepalived puts the VIP there."""
        return ipaddress.IPv4Network((self.vip, self.prefix), strict=False)

    def backends(self, path: str = "") -> list[tuple[str, ipaddress.IPv4Address]]:
        """(config path, address) of every machine behind the door; they may sit on other networks."""
        found = [(f"{path}apiservers[{i}].ip", e.ip) for i, e in enumerate(self.apiservers)]
        found += [(f"{path}ingress[{i}].ip", e.ip) for i, e in enumerate(self.ingress)]
        return found + ([(f"{path}harbor.ip", self.harbor.ip)] if self.harbor is not None else [])


def _checked_endpoints(check: PlainCheck, key: str, nodes: Sequence[Endpoint]) -> tuple[Endpoint, ...]:
    """Backends named and addressed as the stack's nodes are, kept with typed addresses."""
    typed = []
    for i, node in enumerate(nodes):
        under = key if key == "harbor" else f"{key}[{i}]"
        fields = check.fields(NodeSpec, nodes_of([node])[0], under=under)
        typed.append(Endpoint(node.name, fields.get("ip", node.ip)))
    return tuple(typed)


def _network_problems(door: FrontDoor) -> list[Problem]:
    """The stack's address rule for the VIP on its subnet and the backends behind it."""
    try:
        network = door.network
    except (ValueError, TypeError) as error:
        return [Problem("prefix", f"{door.prefix!r} is not the prefix length of an IPv4 network ({error})")]
    return address_problems(network, door.vip, [], vip_path="vip", elsewhere=door.backends())


def pair_problems(door: FrontDoor, pair: Sequence[Member], door_path: str, pair_path: str) -> list[Problem]:
    """The stack's address rule for a pair and its door: both load balancers on the VIP's subnet,
    and no address used twice (the VIP is no machine's: keepalived moves it between the pair)."""
    nodes = [(f"{pair_path}[{i}].ip", node.ip) for i, node in enumerate(pair)]
    return address_problems(door.network, door.vip, nodes, vip_path=f"{door_path}.vip",
                            elsewhere=door.backends(f"{door_path}."))


@refuse_unknown_fields
@dataclass(frozen=True)
class LoadBalancerConfig:
    """A front door and the two nodes that hold it; the first is the initial VRRP MASTER."""

    door: FrontDoor
    pair: tuple[Endpoint, Endpoint]

    def __post_init__(self) -> None:
        """The pair as the stack's load balancers (loadBalancer.nodes): two, named as nodes are, on
        the VIP's subnet, no address used twice. The door checked itself when it was built."""
        check = PlainCheck(type(self).__name__)
        typed = check.fields(LoadBalancerSpec, {"nodes": nodes_of(self.pair)}, renamed={"nodes": "pair"})
        if not check.problems:
            check.keep(self, {"pair": endpoints(typed["pair"])})  # two: the spec's rule held
            check.add(pair_problems(self.door, self.pair, "door", "pair"))
        check.done()


def front_door(spec: StackSpec, placement: Placement) -> FrontDoor:
    lb = spec.load_balancer
    harbor = endpoints(placement.by_role(Role.HARBOR)) if spec.harbor.enabled and lb.harbor_frontend else ()
    return FrontDoor(
        vip=spec.network.vip,
        prefix=spec.network.cidr.prefixlen,
        apiservers=endpoints(placement.by_role(Role.CONTROL_PLANE)),
        cluster=spec.cluster.name,
        interface=spec.network.interface,
        virtual_router_id=spec.virtual_router_id,
        vrrp_version=lb.vrrp_version,
        advert_interval_ms=lb.advert_interval_ms,
        nopreempt=lb.nopreempt,
        haproxy=lb.haproxy,
        haproxy_check=lb.haproxy_check,
        harbor=harbor[0] if harbor else None,
        ingress=endpoints(placement.by_role(Role.WORKER)) if lb.ingress.enabled else (),
        ingress_ports=lb.ingress,
    )


def loadbalancer_config(spec: StackSpec, placement: Placement) -> LoadBalancerConfig:
    first, second = endpoints(placement.by_role(Role.LOAD_BALANCER))
    return LoadBalancerConfig(front_door(spec, placement), (first, second))


def _servers(nodes: tuple[Endpoint, ...]) -> list[dict[str, str]]:
    return [{"name": n.name, "ip": str(n.ip)} for n in nodes]


def haproxy_cfg(config: LoadBalancerConfig, node: Member, material: m.Material) -> str:
    door = config.door
    interval = door.haproxy.check_interval_ms
    fastinter = max(100, interval // 2)  # after a first failed check
    return render(
        "loadbalancer/haproxy.cfg.j2",
        cluster=door.cluster,
        vip=door.vip,
        node_ip=node.ip,
        haproxy=door.haproxy,
        check_timeout_ms=max(100, min(interval, 2000)),
        fastinter_ms=fastinter,
        drop_after_ms=interval + (door.haproxy.fall - 1) * fastinter,
        apiservers=_servers(door.apiservers),
        harbor=_servers((door.harbor,))[0] if door.harbor else None,
        ingress=_servers(door.ingress),
        ingress_ports={"http": door.ingress_ports.http_node_port, "https": door.ingress_ports.https_node_port},
        stats_password=material[m.HAPROXY_STATS_PASSWORD],
    )


def keepalived_conf(config: LoadBalancerConfig, node: Member, material: m.Material) -> str:
    door = config.door
    peer = next(n for n in config.pair if n.name != node.name)
    interval_s = door.advert_interval_ms / 1000
    return render(
        "loadbalancer/keepalived.conf.j2",
        cluster=door.cluster,
        node=node.name,
        node_ip=node.ip,
        peer_ip=peer.ip,
        stats_port=door.haproxy.stats_port,
        check=door.haproxy_check,
        instance=f"{door.cluster.replace('-', '_')}_apiserver",
        interface=door.interface,
        virtual_router_id=door.virtual_router_id or derived_virtual_router_id(door.cluster),
        priority=MASTER_PRIORITY if node.name == config.pair[0].name else BACKUP_PRIORITY,
        advert_int=f"{interval_s:g}",
        nopreempt=door.nopreempt,
        vrrp_version=door.vrrp_version,
        vrrp_password=material[m.VRRP_PASSWORD][:8],
        vip=door.vip,
        prefix=door.prefix,
    )


def loadbalancer_step(config: LoadBalancerConfig, node: Member, material: m.Material) -> Step:
    door = config.door
    files = (
        HostFile("/etc/haproxy/haproxy.cfg", haproxy_cfg(config, node, material),
                 mode="0640", owner="root:haproxy", secret=True),
        HostFile("/etc/haproxy/kubernetes-ca.crt", material[m.KUBERNETES_CA]),
        HostFile("/etc/keepalived/keepalived.conf", keepalived_conf(config, node, material),
                 mode="0600", secret=door.vrrp_version == 2),
        HostFile(CHECK_SCRIPT, read("loadbalancer/check-haproxy.sh"), mode="0755"),
        HostFile(KEEPALIVED_DROP_IN, read("loadbalancer/keepalived-restart.conf")),
        HostFile(HAPROXY_DROP_IN, read("loadbalancer/haproxy-priority.conf")),
        HostFile("/etc/sysctl.d/99-k8s-ha-loadbalancer.conf", read("loadbalancer/sysctl.conf")),
    )
    return Step(
        name="loadbalancer",
        host=node.name,
        script="loadbalancer.sh",
        delete_script="lb-remove.sh",
        files=files,
        env=(
            ("K8SHA_NODE_IP", str(node.ip)),
            ("K8SHA_STATS_PORT", str(door.haproxy.stats_port)),
            ("K8SHA_VIP", str(door.vip)),
        ),
    )
