"""Every file each host receives, and the steps it runs, per host in dependency order.

`host_steps` is the single list of steps per node. The Pulumi components run exactly these (a unit
test compares them), the lab runs them over SSH, and `python -m k8s_ha render` writes them out
with placeholders for secrets. The first master also hosts one membership step per worker, which
the program runs after that worker has joined, and each worker's drain and uncordon around its
upgrade. Every Kubernetes node ends with its upgrade step: the program chains those one node at a
time (docs/kubernetes.md, Upgrades), so the numbers order a host's steps, not the cluster's.
"""

from __future__ import annotations

from pathlib import Path

from k8s_ha.model.spec import Role, StackSpec
from k8s_ha.placement.place import PlacedNode, Placement
from k8s_ha.render import material as m
from k8s_ha.render.cloudinit import network_config, user_data
from k8s_ha.render.etcd import (
    etcd_config,
    etcd_health_step,
    etcd_member_step,
    etcd_restore_step,
    etcd_restored_step,
)
from k8s_ha.render.harbor import harbor_config, harbor_step
from k8s_ha.render.kubernetes import (
    control_plane_certs_step,
    control_plane_config,
    control_plane_init_step,
    control_plane_join_step,
    control_plane_restart_step,
    k8s_node_step,
    k8s_upgrade_step,
    kubernetes_config,
    pool_membership,
    worker_join_step,
    worker_membership_step,
    worker_upgrade_step,
)
from k8s_ha.render.loadbalancer import loadbalancer_config, loadbalancer_step
from k8s_ha.render.node import ready_step
from k8s_ha.render.steps import Step, bundle


def host_steps(spec: StackSpec, placement: Placement, node: PlacedNode, material: m.Material) -> list[Step]:
    steps = [ready_step(spec, node, material)]
    if node.role in (Role.CONTROL_PLANE, Role.WORKER) and not spec.kubernetes.bootstrap:
        return steps  # the machine only: `kubernetes.bootstrap: false` leaves kubeadm out
    if node.role is Role.LOAD_BALANCER:
        steps.append(loadbalancer_step(loadbalancer_config(spec, placement), node, material))
    elif node.role is Role.ETCD:
        etcd = etcd_config(spec, placement)
        steps.append(etcd_member_step(etcd, node, material))
        if node.name == etcd.members[0].name:
            steps.append(etcd_health_step(etcd, material))
        if spec.etcd.restore is not None:  # etcd.restore: every member's restore, then the gate again
            steps.append(etcd_restore_step(etcd, node, material))
            if node.name == etcd.members[0].name:
                steps.append(etcd_restored_step(etcd, material))
    elif node.role is Role.CONTROL_PLANE:
        control_plane = control_plane_config(spec, placement)
        kubernetes = control_plane.kubernetes
        steps.append(k8s_node_step(kubernetes, node, material))
        first = node.name == control_plane.masters[0]
        if first:
            steps.append(control_plane_init_step(control_plane, node, material))
            steps += [worker_membership_step(pool_membership(spec, placement, w.pool), w, material)
                      for w in placement.by_role(Role.WORKER)]
        else:
            steps.append(control_plane_join_step(kubernetes, node, material))
        # The rolling upgrade's steps (a later `up` that changes versions.kubernetes runs them).
        steps.append(k8s_upgrade_step(kubernetes, node, "first" if first else "control-plane", material))
        if spec.etcd.restore is not None:
            steps.append(control_plane_restart_step(kubernetes, node, spec.etcd.restore.sha256, material))
        # Certificates: kubeadm's renewed when due, expiries reported (chained across the masters).
        steps.append(control_plane_certs_step(kubernetes, node, material))
        if first:
            for w in placement.by_role(Role.WORKER):
                pool = pool_membership(spec, placement, w.pool)
                steps += [worker_upgrade_step(kubernetes, pool, w, phase, material) for phase in ("drain", "uncordon")]
    elif node.role is Role.WORKER:
        kubernetes = kubernetes_config(spec, placement)
        steps.append(k8s_node_step(kubernetes, node, material))
        steps.append(worker_join_step(kubernetes, node, material))
        steps.append(k8s_upgrade_step(kubernetes, node, "worker", material))
    elif node.role is Role.HARBOR:
        steps.append(harbor_step(harbor_config(spec, placement), node, material))
    return steps


def write_tree(spec: StackSpec, placement: Placement, out: Path, material: m.Material | None = None) -> int:
    """Write DIR/<host>/<absolute path> for every file and DIR/<host>/k8s-ha/steps/NN-<step>.sh for
    every bundle; VMs also get DIR/<host>/cloud-init/{user-data,network-config}. Returns the count."""
    material = m.Placeholders() if material is None else material
    written = 0
    for node in placement.nodes:
        host = out / node.name
        if node.is_vm:
            _write(host / "cloud-init/user-data", user_data(spec, node, material))
            _write(host / "cloud-init/network-config", network_config(spec, node))
            written += 2
        for index, step in enumerate(host_steps(spec, placement, node, material), start=1):
            for file in step.files:
                _write(host / file.path.lstrip("/"), file.content)
                written += 1
            _write(host / f"k8s-ha/steps/{index:02d}-{step.name}.sh", bundle(step))
            written += 1
    return written


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
