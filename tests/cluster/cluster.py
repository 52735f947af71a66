"""The cluster tier's stack: the lab stack (tests/cluster/config.py) run by the program, every guest
booted, and every recorded step applied in the graph's order - the remote.Command steps over the
pinned SSH keys (as pulumi-command sends them) and the add-ons (as pulumi-kubernetes applies them:
server-side apply of the recorded objects and patches, through the first master's admin.conf).

    lab bundle (.cache/lab-artifacts/bundle) -> serve-bundle on the operator's address in the lab
    namespace (files over HTTP, images from docker-registry) -> nodes install from it, no route out
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cluster.config import CP_NAMES, ETCD_NAMES, LB_NAMES, NODES, WORKER_NAMES, stack_config
from tests.guests.hypervisors import LabHypervisors
from tests.guests.stack import GuestStack
from tests.support.recorded_stack import COMMAND, RecordedStack
from tests.unit.harness import Graph, Registered

ADMIN = "/etc/kubernetes/admin.conf"
KUBECTL_TIMEOUT_S = 120
# Which layer a recorded step belongs to, by its name (time-to-cluster per layer).
LAYERS = (("upgrade chain", ("-k8s-upgrade",)), ("loadbalancers", ("-loadbalancer",)),
          ("etcd", ("-etcd-member", "etcd-health")),
          ("node prep", ("-k8s-node",)), ("kubeadm init", ("-k8s-init",)), ("kubeadm join", ("-k8s-join",)),
          ("add-ons", ("objects", "patch-")), ("workers ready", ("-k8s-membership",)), ("host ready", ("-ready",)),
          ("certificates", ("-k8s-certs",)), ("etcd restore", ("-etcd-restore", "etcd-restored")),
          ("control-plane restart", ("-k8s-restart-control-plane",)))


def is_addon(resource: Registered) -> bool:
    """The recorded pulumi-kubernetes resources the tier applies (the provider itself is not a step)."""
    return resource.type.startswith("kubernetes:") and (
        resource.type == "kubernetes:yaml/v2:ConfigGroup" or resource.type.endswith("Patch"))


def is_step(resource: Registered) -> bool:
    """What an `up` runs on the cluster: a remote command or an add-on."""
    return resource.type == COMMAND or is_addon(resource)


def layer_of(step: str) -> str:
    for layer, marks in LAYERS:
        if any(mark in step for mark in marks):
            return layer
    return "other"


def _ints(value: Any) -> Any:
    """Protobuf turned the program's integers into floats (2 -> 2.0); the API wants integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def addon_objects(resource: Registered) -> list[dict[str, Any]]:
    """The objects pulumi-kubernetes would apply for one recorded add-on resource."""
    inputs = _ints(resource.inputs)
    if resource.type == "kubernetes:yaml/v2:ConfigGroup":
        return list(inputs["objs"])
    group_version, kind = resource.type.split(":")[1], resource.type.split(":")[2].removesuffix("Patch")
    api_version = group_version.removeprefix("core/")
    return [{"apiVersion": api_version, "kind": kind, **inputs}]


@dataclass(frozen=True)
class Roles:
    """The cluster's nodes by role (the checklist and drills ask the stack, not a fixed topology)."""

    lbs: tuple[str, ...]
    etcd: tuple[str, ...]
    masters: tuple[str, ...]
    workers: tuple[str, ...]

    @property
    def kube(self) -> tuple[str, ...]:
        return (*self.masters, *self.workers)


class ClusterSteps(RecordedStack):
    """What the cluster tier adds to a recorded stack, on any kind of host: the add-ons applied as
    pulumi-kubernetes would, kubectl through the VIP with the exported kubeconfig, per-layer times."""

    roles: Roles
    kubectl_bin: Path

    def _cluster_init(self, kubectl: Path, roles: Roles) -> None:
        self.kubectl_bin, self.roles = kubectl, roles
        self.kubeconfig = self.ssh_dir / "kubeconfig"
        self.kubeconfig.write_text(str(self.graph.stack_outputs["kubeconfig"]))  # the stack's export
        self.kubeconfig.chmod(0o600)
        self.step_spans: dict[str, tuple[float, float]] = {}
        # What the "state" holds: each step as it last succeeded (after bootstrap, all of them). A
        # step that fails keeps its old record, so the next update runs it again.
        self.deployed: dict[str, Registered] = {r.urn: r for r in self.graph.resources.values() if is_step(r)}

    # ------------------------------------------------------------------ steps
    def apply_addon(self, resource: Registered) -> float:
        """Server-side apply on the first master, as pulumi-kubernetes does (patches force ownership)."""
        started = time.monotonic()
        document = json.dumps({"apiVersion": "v1", "kind": "List", "items": addon_objects(resource)})
        # A Patch resource is a partial object, which server-side apply takes and kubectl's
        # client-side schema check refuses (no containers, no selector): the server validates it.
        partial = " --validate=false" if resource.type.endswith("Patch") else ""
        self.run(self.roles.masters[0], f"kubectl --kubeconfig {ADMIN} apply --server-side --force-conflicts "
                                        f"--field-manager=pulumi-kubernetes{partial} -f -", stdin=document, timeout=600)
        return time.monotonic() - started

    def _step(self, resource: Registered, t0: float) -> float:
        started = time.monotonic() - t0
        seconds = self.run_command(resource) if resource.type == COMMAND else self.apply_addon(resource)
        self.step_spans[resource.name] = (round(started, 1), round(started + seconds, 1))
        return seconds

    def bootstrap(self, through: str | None = None) -> dict[str, float]:
        """Every recorded step of every booted guest plus the add-ons (or only step `through` and
        what it waits for), wave by wave, each wave in parallel. Steps already done are skipped:
        after a failure, a second call resumes (the steps are idempotent, so re-running the one
        that failed is safe)."""
        seconds: dict[str, float] = {}
        t0 = time.monotonic()
        wanted = None
        if through is not None:
            last = self.graph.named(through)
            wanted = {last.urn} | {a.urn for a in self.graph.ancestors(last) if a.type == COMMAND or is_addon(a)}
        for every in self.step_order(also=is_addon, only=wanted):
            wave = [r for r in every if r.name not in self.step_spans]
            if not wave:
                continue
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(wave)) as pool:
                runs = {r.name: pool.submit(self._step, r, t0) for r in wave}
                for name, future in runs.items():
                    seconds[name] = round(future.result(), 1)
            self.log(f"{time.monotonic() - t0:6.0f} s  steps done: {sorted(runs)}")
        return seconds

    def update(self, on_done: Callable[[str, float, float], None] = lambda name, start, end: None
               ) -> dict[str, float]:
        """A second `pulumi up` after a change of `self.config`: record the program again (the same
        key material) and run what changed, as pulumi-command and pulumi-kubernetes would (a
        changed command runs its `update`, a new one its `create`; a changed add-on is applied
        again), wave by wave in dependency order; then, as the engine does last, the `delete` of
        each command the program no longer has, dependents first. `on_done(step, start, end)`:
        each step's span (time.monotonic()). Returns seconds per step."""
        def content(r: Registered) -> str:
            return json.dumps(r.inputs, sort_keys=True, default=str)

        deployed = self.deployed
        self.rerun_program()
        changed = [r for r in self.graph.resources.values()
                   if is_step(r) and (r.urn not in deployed or content(deployed[r.urn]) != content(r))]
        urns = {r.urn for r in changed}
        waits = {r.urn: {a.urn for a in self.graph.ancestors(r)} & urns for r in changed}
        removed = [r for urn, r in deployed.items() if urn not in self.graph.resources]
        if any(r.type != COMMAND for r in removed):
            raise self.error(f"the tier deletes only commands, not {[r.name for r in removed if r.type != COMMAND]}")
        # A removed step waits for the deletes of those that waited for it (in the deployed records).
        history = Graph(resources=dict(deployed))
        gone = {r.urn for r in removed}
        waited_for = {d.urn: {a.urn for a in history.ancestors(d)} & gone for d in removed}
        dependents = {r.urn: {d for d, ancestors in waited_for.items() if r.urn in ancestors} for r in removed}
        seconds: dict[str, float] = {}

        def one(r: Registered, action: str) -> float:
            start = time.monotonic()
            if r.type != COMMAND:
                took = self.apply_addon(r)
            elif action == "delete" and "delete" not in r.inputs:
                took = 0.0  # pulumi-command runs nothing for a command without a delete
            else:
                took = self.run_command(r, action)
            if action == "delete":
                deployed.pop(r.urn)
            else:
                deployed[r.urn] = r
            on_done(r.name, start, start + took)
            return took

        def in_waves(todo: list[Registered], blocked_by: dict[str, set[str]], action: Callable[[Registered], str]
                     ) -> None:
            done: set[str] = set()
            while len(done) < len(todo):
                wave = [r for r in todo if r.urn not in done and blocked_by[r.urn] <= done]
                with concurrent.futures.ThreadPoolExecutor(max_workers=len(wave)) as pool:
                    runs = {r.name: pool.submit(one, r, action(r)) for r in wave}
                    for name, future in runs.items():
                        seconds[name] = round(future.result(), 1)
                done |= {r.urn for r in wave}
                self.log(f"update: steps done: {sorted(runs)}")

        in_waves(changed, waits, lambda r: "update" if r.urn in deployed else "create")
        in_waves(removed, dependents, lambda r: "delete")
        return seconds

    def layer_seconds(self) -> dict[str, float]:
        """Wall-clock span of each layer's steps (layers overlap where the graph lets them)."""
        spans: dict[str, list[tuple[float, float]]] = {}
        for step, span in self.step_spans.items():
            spans.setdefault(layer_of(step), []).append(span)
        return {layer: round(max(e for _, e in s) - min(b for b, _ in s), 1) for layer, s in spans.items()}

    # ------------------------------------------------------------------ kubectl
    def kubectl(self, *args: str, timeout: float = KUBECTL_TIMEOUT_S, check: bool = True,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """kubectl from the operator's workstation, through the VIP, with the stack's exported kubeconfig."""
        done = subprocess.run(self.netns_argv([str(self.kubectl_bin), "--kubeconfig", str(self.kubeconfig),
                                                   "--request-timeout", "20s", *args]),
                              input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise self.error(f"kubectl {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
        return done

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)


class ClusterStack(ClusterSteps, GuestStack):
    """Nine TCG guests of the lab stack; `close()` removes every one."""

    def __init__(self, hvs: LabHypervisors, image: Path, domain_type: str, work: Path,
                 pins: dict[str, Any], kubectl: Path, log: Callable[[str], None] = print,
                 booted: tuple[str, ...] = NODES) -> None:
        config = stack_config({n: hv.uri for n, hv in hvs.hypervisors.items()}, hvs.client_ip, image, domain_type,
                              pins)
        GuestStack.__init__(self, hvs, image, domain_type, work, log, config=config, booted=booted)
        self._cluster_init(kubectl, Roles(LB_NAMES, ETCD_NAMES, CP_NAMES, WORKER_NAMES))
