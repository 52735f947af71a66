"""Put every node on a hypervisor, spreading each role, and say what one hypervisor's loss does.

A failure domain is a hypervisor, or for an existing host its `failureDomain` (by default the host
itself). The analysis removes one domain at a time and checks what the cluster needs to keep
working: etcd quorum, one load balancer, one control-plane node; worker capacity is reported as a
share. With fewer than 3 domains some single loss is always fatal (etcd quorum or both LBs).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Literal

from k8s_ha.model.spec import ExistingHost, NodeSpec, Role, Size, StackSpec, quorum

Verdict = Literal["ok", "degraded", "down"]

# Roles placed first get the most even spread when pins already skew the hypervisors.
PLACEMENT_ORDER = (Role.ETCD, Role.CONTROL_PLANE, Role.LOAD_BALANCER, Role.HARBOR, Role.WORKER)


@dataclass(frozen=True)
class PlacedNode:
    name: str
    role: Role
    pool: str
    path: str
    ip: ipaddress.IPv4Address
    size: Size
    hypervisor: str | None
    failure_domain: str
    existing: ExistingHost | None
    mac: str

    @property
    def is_vm(self) -> bool:
        return self.existing is None


@dataclass(frozen=True)
class DomainLoss:
    """What the cluster looks like after one failure domain is gone."""

    domain: str
    lost: tuple[str, ...]
    etcd_alive: int
    etcd_total: int
    load_balancers_alive: int
    control_plane_alive: int
    worker_capacity: float  # surviving share of worker vCPUs, 1.0 when there are no workers
    harbor_alive: bool | None
    verdict: Verdict
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Placement:
    nodes: tuple[PlacedNode, ...]
    domains: tuple[str, ...]
    losses: tuple[DomainLoss, ...]
    warnings: tuple[str, ...] = field(default=())

    def by_role(self, role: Role) -> list[PlacedNode]:
        return [n for n in self.nodes if n.role is role]

    def node(self, name: str) -> PlacedNode:
        return next(n for n in self.nodes if n.name == name)

    @property
    def fatal_losses(self) -> list[DomainLoss]:
        return [loss for loss in self.losses if loss.verdict == "down"]


def stable_mac(cluster: str, node: str) -> str:
    """A locally administered MAC (QEMU's 52:54:00 prefix) that never changes for a node."""
    digest = hashlib.sha256(f"{cluster}/{node}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def place(spec: StackSpec) -> Placement:
    """Deterministic placement: pins first, then each node on the least-loaded allowed hypervisor."""
    entries = sorted(spec.role_nodes(), key=lambda e: PLACEMENT_ORDER.index(e[0]))
    hv_names = [hv.name for hv in spec.hypervisors]
    per_group: dict[str, Counter[str]] = defaultdict(Counter)
    per_hv: Counter[str] = Counter()
    for role, _path, node, pool in entries:  # pins count before anything is spread
        if node.hypervisor is not None:
            per_group[_group(role, pool)][node.hypervisor] += 1
            per_hv[node.hypervisor] += 1
    pool_hvs = {p.name: p.hypervisors for p in spec.worker_pools}
    placed: dict[str, PlacedNode] = {}
    for role, path, node, pool in entries:
        hypervisor = node.hypervisor
        if node.existing is None and hypervisor is None and hv_names:
            allowed = (pool_hvs.get(pool) if role is Role.WORKER else None) or hv_names
            group = per_group[_group(role, pool)]
            hypervisor = min(allowed, key=lambda h: (group[h], per_hv[h], hv_names.index(h)))
            group[hypervisor] += 1
            per_hv[hypervisor] += 1
        placed[node.name] = _placed(spec, role, path, node, pool, hypervisor)
    nodes = tuple(placed[node.name] for _r, _p, node, _pool in spec.role_nodes())
    domains = tuple(dict.fromkeys([*hv_names, *(n.failure_domain for n in nodes)]))
    used = tuple(d for d in domains if any(n.failure_domain == d for n in nodes))
    losses = tuple(_lose(spec, nodes, d) for d in used)
    return Placement(nodes=nodes, domains=used, losses=losses, warnings=tuple(_warnings(used, losses)))


def _group(role: Role, pool: str) -> str:
    return f"{role.value}/{pool}"


def _placed(
    spec: StackSpec, role: Role, path: str, node: NodeSpec, pool: str, hypervisor: str | None
) -> PlacedNode:
    if node.existing is not None:
        domain = f"host:{node.existing.failure_domain or node.name}"
    else:
        domain = hypervisor or "(no hypervisor)"
    return PlacedNode(
        name=node.name,
        role=role,
        pool=pool,
        path=path,
        ip=node.ip,
        size=spec.size_of(role, node, pool),
        hypervisor=hypervisor,
        failure_domain=domain,
        existing=node.existing,
        mac=stable_mac(spec.cluster.name, node.name),
    )


def _lose(spec: StackSpec, nodes: tuple[PlacedNode, ...], domain: str) -> DomainLoss:
    alive = [n for n in nodes if n.failure_domain != domain]
    lost = tuple(n.name for n in nodes if n.failure_domain == domain)

    def count(role: Role, among: list[PlacedNode]) -> int:
        return sum(1 for n in among if n.role is role)

    etcd_total = count(Role.ETCD, list(nodes))
    etcd_alive = count(Role.ETCD, alive)
    lbs, cps = count(Role.LOAD_BALANCER, alive), count(Role.CONTROL_PLANE, alive)
    worker_vcpu = sum(n.size.vcpu for n in nodes if n.role is Role.WORKER)
    alive_vcpu = sum(n.size.vcpu for n in alive if n.role is Role.WORKER)
    share = alive_vcpu / worker_vcpu if worker_vcpu else 1.0
    harbor = None if not spec.harbor.enabled else count(Role.HARBOR, alive) > 0
    down: list[str] = []
    degraded: list[str] = []
    if etcd_alive < quorum(etcd_total):
        down.append(f"etcd keeps {etcd_alive} of {etcd_total} members, quorum needs {quorum(etcd_total)}")
    if lbs == 0:
        down.append("both load balancers are lost: the VIP goes away")
    if cps == 0:
        down.append("every control-plane node is lost")
    workers = count(Role.WORKER, list(nodes))
    if workers > 1 and alive_vcpu == 0:  # a lone worker cannot be spread: reported below instead
        down.append("every worker is lost")
    if not down:
        if etcd_alive < etcd_total:
            degraded.append(f"etcd runs on {etcd_alive} of {etcd_total} members")
        if lbs < 2:
            degraded.append("one load balancer left: no VIP failover until it is back")
        if workers == 1 and alive_vcpu == 0:
            degraded.append("the only worker is lost: no capacity for workloads (add workers)")
        elif share < 1.0:
            degraded.append(f"{share:.0%} of worker vCPUs remain")
        if harbor is False:
            degraded.append("Harbor is down: pulls through it fail until it is back")
    verdict: Verdict = "down" if down else ("degraded" if degraded else "ok")
    return DomainLoss(
        domain=domain,
        lost=lost,
        etcd_alive=etcd_alive,
        etcd_total=etcd_total,
        load_balancers_alive=lbs,
        control_plane_alive=cps,
        worker_capacity=share,
        harbor_alive=harbor,
        verdict=verdict,
        reasons=tuple(down or degraded),
    )


def _warnings(domains: tuple[str, ...], losses: tuple[DomainLoss, ...]) -> list[str]:
    if len(domains) >= 3:
        return []
    if len(domains) == 1:
        head = (
            f"NOT HIGHLY AVAILABLE: every node runs in one failure domain ({domains[0]}); "
            "losing it loses the whole cluster. Use at least 3 hypervisors for HA."
        )
    else:
        head = (
            f"ONLY {len(domains)} FAILURE DOMAINS: with fewer than 3 hypervisors some single "
            "hypervisor loss takes the cluster down. Use at least 3."
        )
    fatal = [f"losing {loss.domain} takes the cluster down: " + "; ".join(loss.reasons)
             for loss in losses if loss.verdict == "down"]
    return [head, *fatal]
