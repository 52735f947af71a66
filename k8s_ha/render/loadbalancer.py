"""haproxy.cfg, keepalived.conf and the load-balancer step for each of the two LB nodes.

Everything they need is in a `LoadBalancerConfig` of plain values; `loadbalancer_config` derives it
from a stack, and `HaproxyKeepalivedPair` takes one directly when used on its own.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from k8s_ha.model import timers
from k8s_ha.model.spec import HaproxyCheck, HaproxySettings, IngressFrontend, Role, StackSpec, derived_virtual_router_id
from k8s_ha.placement.place import Placement
from k8s_ha.render import material as m
from k8s_ha.render.members import Endpoint, Member, endpoints
from k8s_ha.render.steps import HostFile, Step
from k8s_ha.render.templating import read, render

CHECK_SCRIPT = "/usr/local/libexec/k8s-ha/check-haproxy"
KEEPALIVED_DROP_IN = "/etc/systemd/system/keepalived.service.d/k8s-ha.conf"
HAPROXY_DROP_IN = "/etc/systemd/system/haproxy.service.d/k8s-ha.conf"
MASTER_PRIORITY, BACKUP_PRIORITY = 150, 100


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


@dataclass(frozen=True)
class LoadBalancerConfig:
    """A front door and the two nodes that hold it; the first is the initial VRRP MASTER."""

    door: FrontDoor
    pair: tuple[Endpoint, Endpoint]


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
