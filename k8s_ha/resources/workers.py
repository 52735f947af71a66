"""WorkerPool: workers are prepared and joined in parallel, all waiting only on `kubeadm init`.

Once a worker is a member, its upgrade runs in the cluster's upgrade chain, one worker at a time
after the masters': a drain step on the first master, the worker's own upgrade step, an uncordon
step on the first master. On a new cluster, and whenever the worker already runs the stack's
version, the three change nothing.

Each worker also has a membership step on the first master: it waits for the Node to be Ready and
sets its labels; on removal it drains and deletes the Node before the worker is reset and its VM
goes (Pulumi deletes in reverse dependency order), so workers never hold credentials that can
delete Nodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import pulumi
import pulumi_command as command

from k8s_ha.model import spec
from k8s_ha.model.validation import PlainCheck, refuse_unknown_fields
from k8s_ha.render import material as m
from k8s_ha.render.kubernetes import (
    KubernetesConfig,
    NodeEndpoint,
    PoolMembership,
    k8s_upgrade_step,
    worker_join_step,
    worker_membership_step,
    worker_upgrade_step,
)
from k8s_ha.render.members import nodes_of
from k8s_ha.resources.control_plane import (
    KUBERNETES_NODE,
    ControlPlane,
    check_domains,
    check_node_registry,
    node_material,
    prepare_node,
)
from k8s_ha.resources.remote import resolve, secret
from k8s_ha.resources.target import Target, claim_machines, named


@refuse_unknown_fields
@dataclass(frozen=True)
class WorkerPoolArgs:
    """One pool's workers, the cluster's Kubernetes config, what they join with, and the control
    plane they join: joins wait for its `init` step, and its first master, which holds admin.conf,
    runs each worker's membership step. Every worker must be in that control plane's
    `ControlPlaneArgs.workers` (a new worker re-runs init, which refreshes the join token)."""

    workers: Sequence[Target]
    kubernetes: KubernetesConfig
    pool: str
    bootstrap_token: pulumi.Input[str]
    discovery_hash: pulumi.Input[str]
    control_plane: ControlPlane
    labels: Mapping[str, str] = field(default_factory=dict)  # set on every Node of the pool
    # Failure domain per worker (its topology.kubernetes.io/zone); a worker not named is its own.
    failure_domains: Mapping[str, str] = field(default_factory=dict)
    # The certificate Harbor serves; needed when `kubernetes.registry` is set.
    registry_certificate: pulumi.Input[str] | None = None
    # A Node turns Ready only once the CNI runs: membership steps wait for these.
    cni: Sequence[pulumi.Resource] = ()
    # Where this pool's upgrades join the cluster's upgrade chain: the previous pool's `upgraded`
    # (by default, the control plane's: its last master's upgrade).
    upgrade_after: Sequence[pulumi.Resource] = ()

    def __post_init__(self) -> None:
        """Wrong input fails here, so a component never starts registering from it: the stack's
        rules for a worker pool (its name, labels, and workers named and addressed as nodes are),
        and that the control plane expects these workers."""
        workers = named(self.workers, "WorkerPoolArgs.workers")
        check = PlainCheck(type(self).__name__, python_names=True)
        check.fields(spec.WorkerPool, {"name": self.pool, "labels": self.labels, "nodes": nodes_of(self.workers)},
                     renamed={"name": "pool", "nodes": "workers"})
        check.done()
        joined_by(self.workers, self.control_plane)
        check_node_registry(self.kubernetes, self.registry_certificate, "WorkerPoolArgs")
        check_domains(self.failure_domains, workers, "WorkerPoolArgs.failure_domains", "worker")


def joined_by(workers: Sequence[Target], control_plane: ControlPlane) -> None:
    """Refuse workers the control plane does not expect: its init step would not refresh the join
    token for them, so they could not join once the first token expired."""
    missing = sorted(t.name for t in workers if t.name not in control_plane.joining)
    if missing:
        raise ValueError(
            f"WorkerPoolArgs.workers: {missing} are not in ControlPlaneArgs.workers of control plane "
            f"{control_plane.component_name!r}; add them there, so that `kubeadm init` refreshes the "
            "join token they join with")


class WorkerPool(pulumi.ComponentResource):
    joins: dict[str, command.remote.Command]
    memberships: dict[str, command.remote.Command]
    upgrades: dict[str, command.remote.Command]  # each worker's own upgrade step, in upgrade order
    upgraded: pulumi.Resource  # the end of this pool's part of the upgrade chain

    def __init__(self, name: str, args: WorkerPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        kubernetes = args.kubernetes
        master, init = args.control_plane.first, args.control_plane.init
        prepare = resolve(node_material(kubernetes, args.registry_certificate))
        claim_machines(KUBERNETES_NODE, f"WorkerPool {name!r}", args.workers)
        super().__init__("k8s-ha:kubernetes:WorkerPool", name, None, opts)
        pool = PoolMembership(master.name, args.pool, dict(args.labels), kubernetes.settings.wait_scale)
        join_material = resolve({
            m.BOOTSTRAP_TOKEN: secret(args.bootstrap_token),
            m.DISCOVERY_HASH: pulumi.Output.from_input(args.discovery_hash),
        })
        no_material = resolve({})  # a membership step only names the worker and its labels
        self.joins, self.memberships, self.upgrades = {}, {}, {}
        chain = list(args.upgrade_after) or [args.control_plane.upgraded]
        for target in args.workers:
            node = NodeEndpoint(target.name, target.ip, args.failure_domains.get(target.name, target.name))
            prepared = prepare_node(target, kubernetes, prepare, self)
            join = target.step(
                f"{target.name}-k8s-join", partial(worker_join_step, kubernetes, node), join_material,
                parent=self, after=[prepared, init],
            )
            self.joins[target.name] = join
            self.memberships[target.name] = master.step(
                f"{target.name}-k8s-membership", partial(worker_membership_step, pool, node), no_material,
                parent=self, after=[join, *args.cni],
            )
            drain = master.step(
                f"{target.name}-k8s-upgrade-drain", partial(worker_upgrade_step, kubernetes, pool, node, "drain"),
                no_material, parent=self, after=[*chain, self.memberships[target.name]])
            self.upgrades[target.name] = target.step(
                f"{target.name}-k8s-upgrade", partial(k8s_upgrade_step, kubernetes, node, "worker"), no_material,
                parent=self, after=[drain])
            chain = [master.step(
                f"{target.name}-k8s-upgrade-uncordon",
                partial(worker_upgrade_step, kubernetes, pool, node, "uncordon"), no_material,
                parent=self, after=[self.upgrades[target.name]])]
        self.upgraded = chain[0]
        self.register_outputs({})
