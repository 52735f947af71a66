"""The plan as data (for `--json` and the stack's `faultTolerance` export) and as readable text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from k8s_ha.model.spec import Role, StackSpec
from k8s_ha.placement.place import DomainLoss, Placement


def fault_tolerance(placement: Placement) -> dict[str, Any]:
    """Per failure domain, what its loss leaves; the shape exported by the stack."""
    return {
        "failureDomains": list(placement.domains),
        "highlyAvailable": not placement.fatal_losses,
        "warnings": list(placement.warnings),
        "losses": [_loss(loss) for loss in placement.losses],
    }


def _loss(loss: DomainLoss) -> dict[str, Any]:
    return {
        "domain": loss.domain,
        "verdict": loss.verdict,
        "lostNodes": list(loss.lost),
        "etcd": {"alive": loss.etcd_alive, "total": loss.etcd_total},
        "loadBalancersAlive": loss.load_balancers_alive,
        "controlPlaneAlive": loss.control_plane_alive,
        "workerCapacity": round(loss.worker_capacity, 4),
        "harborAlive": loss.harbor_alive,
        "reasons": list(loss.reasons),
    }


def upgrade_order(spec: StackSpec, placement: Placement) -> list[str]:
    """The nodes a change of versions.kubernetes upgrades, one at a time, in the program's order:
    the masters from the first (which runs `kubeadm upgrade apply`), then the workers pool by pool,
    each drained first. Empty when the stack leaves Kubernetes out."""
    if not spec.kubernetes.bootstrap:
        return []
    workers = placement.by_role(Role.WORKER)
    return [n.name for n in placement.by_role(Role.CONTROL_PLANE)] + [
        n.name for pool in spec.worker_pools for n in workers if n.pool == pool.name]


def plan_data(spec: StackSpec, placement: Placement) -> dict[str, Any]:
    return {
        "cluster": spec.cluster.name,
        "vip": str(spec.network.vip),
        "virtualRouterId": spec.virtual_router_id,
        "nodes": [
            {
                "name": n.name,
                "role": n.role.value,
                "pool": n.pool,
                "hypervisor": n.hypervisor,
                "failureDomain": n.failure_domain,
                "ip": str(n.ip),
                "vcpu": n.size.vcpu,
                "memoryMib": n.size.memory_mib,
                "diskGib": n.size.disk_gib,
                "source": "vm" if n.is_vm else "existing",
                "mac": n.mac if n.is_vm else None,
            }
            for n in placement.nodes
        ],
        "faultTolerance": fault_tolerance(placement),
        "upgradeOrder": upgrade_order(spec, placement),
    }


def format_plan(spec: StackSpec, placement: Placement) -> str:
    rows = [("NODE", "ROLE", "POOL", "HYPERVISOR", "IP", "VCPU", "MEMORY", "DISK")]
    for n in placement.nodes:
        where = n.hypervisor or f"existing ({n.failure_domain})"
        rows.append((n.name, n.role.value, n.pool, where, str(n.ip), str(n.size.vcpu),
                     f"{n.size.memory_mib} MiB", f"{n.size.disk_gib} GiB"))
    out = [f"cluster {spec.cluster.name}: VIP {spec.network.vip}:6443, "
           f"VRRP router id {spec.virtual_router_id}, {len(placement.nodes)} nodes", ""]
    out += _table(rows)
    out += ["", "Fault tolerance: one failure domain lost at a time"]
    loss_rows = [("LOST", "VERDICT", "ETCD", "LBS", "MASTERS", "WORKER CPU", "WHY")]
    for loss in placement.losses:
        loss_rows.append((loss.domain, loss.verdict.upper(), f"{loss.etcd_alive}/{loss.etcd_total}",
                          str(loss.load_balancers_alive), str(loss.control_plane_alive),
                          f"{loss.worker_capacity:.0%}", "; ".join(loss.reasons) or "-"))
    out += _table(loss_rows)
    if order := upgrade_order(spec, placement):
        out += ["", f"Rolling upgrade order (a change of versions.kubernetes, one node at a time; workers are "
                    f"drained first): {', '.join(order)}"]
    for warning in placement.warnings:
        out += ["", f"WARNING: {warning}"]
    return "\n".join(out)


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
