"""haproxy.cfg, keepalived.conf and the load-balancer step for each of the two LB nodes."""

from __future__ import annotations

from k8s_ha.model.spec import Role, StackSpec
from k8s_ha.placement.place import PlacedNode, Placement
from k8s_ha.render import material as m
from k8s_ha.render.steps import HostFile, Step
from k8s_ha.render.templating import read, render

CHECK_SCRIPT = "/usr/local/libexec/k8s-ha/check-haproxy"
KEEPALIVED_DROP_IN = "/etc/systemd/system/keepalived.service.d/k8s-ha.conf"
MASTER_PRIORITY, BACKUP_PRIORITY = 150, 100


def _servers(nodes: list[PlacedNode]) -> list[dict[str, str]]:
    return [{"name": n.name, "ip": str(n.ip)} for n in nodes]


def haproxy_cfg(spec: StackSpec, placement: Placement, node: PlacedNode, material: m.Material) -> str:
    lb = spec.load_balancer
    harbor = placement.by_role(Role.HARBOR) if spec.harbor.enabled and lb.harbor_frontend else []
    ingress = placement.by_role(Role.WORKER) if lb.ingress.enabled else []
    interval = lb.haproxy.check_interval_ms
    return render(
        "loadbalancer/haproxy.cfg.j2",
        cluster=spec.cluster.name,
        vip=spec.network.vip,
        node_ip=node.ip,
        haproxy=lb.haproxy,
        check_timeout_ms=max(100, min(interval, 2000)),
        fastinter_ms=max(100, interval // 2),
        drop_after_ms=interval * lb.haproxy.fall,
        apiservers=_servers(placement.by_role(Role.CONTROL_PLANE)),
        harbor=_servers(harbor)[0] if harbor else None,
        ingress=_servers(ingress),
        ingress_ports={"http": lb.ingress.http_node_port, "https": lb.ingress.https_node_port},
        stats_password=material[m.HAPROXY_STATS_PASSWORD],
    )


def keepalived_conf(spec: StackSpec, placement: Placement, node: PlacedNode, material: m.Material) -> str:
    lb = spec.load_balancer
    pair = placement.by_role(Role.LOAD_BALANCER)
    peer = next(n for n in pair if n.name != node.name)
    interval_s = lb.advert_interval_ms / 1000
    return render(
        "loadbalancer/keepalived.conf.j2",
        cluster=spec.cluster.name,
        node=node.name,
        node_ip=node.ip,
        peer_ip=peer.ip,
        stats_port=lb.haproxy.stats_port,
        instance=f"{spec.cluster.name.replace('-', '_')}_apiserver",
        interface=_interface(spec, node),
        virtual_router_id=spec.virtual_router_id,
        priority=MASTER_PRIORITY if node.name == pair[0].name else BACKUP_PRIORITY,
        advert_int=f"{interval_s:g}",
        nopreempt=lb.nopreempt,
        vrrp_version=lb.vrrp_version,
        vrrp_password=material[m.VRRP_PASSWORD][:8],
        vip=spec.network.vip,
        prefix=spec.network.cidr.prefixlen,
    )


def _interface(spec: StackSpec, node: PlacedNode) -> str:
    return spec.network.interface


def loadbalancer_step(spec: StackSpec, placement: Placement, node: PlacedNode, material: m.Material) -> Step:
    lb = spec.load_balancer
    files = (
        HostFile("/etc/haproxy/haproxy.cfg", haproxy_cfg(spec, placement, node, material),
                 mode="0640", owner="root:haproxy", secret=True),
        HostFile("/etc/haproxy/kubernetes-ca.crt", material[m.KUBERNETES_CA]),
        HostFile("/etc/keepalived/keepalived.conf", keepalived_conf(spec, placement, node, material),
                 mode="0600", secret=lb.vrrp_version == 2),
        HostFile(CHECK_SCRIPT, read("loadbalancer/check-haproxy.sh"), mode="0755"),
        HostFile(KEEPALIVED_DROP_IN, read("loadbalancer/keepalived-restart.conf")),
        HostFile("/etc/sysctl.d/99-k8s-ha-loadbalancer.conf", read("loadbalancer/sysctl.conf")),
    )
    return Step(
        name="loadbalancer",
        host=node.name,
        script="loadbalancer.sh",
        files=files,
        env=(
            ("K8SHA_NODE_IP", str(node.ip)),
            ("K8SHA_STATS_PORT", str(lb.haproxy.stats_port)),
            ("K8SHA_VIP", str(spec.network.vip)),
        ),
    )
