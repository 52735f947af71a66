"""The program itself makes the node-container cluster: `up` with the real engine and its plugins
(pulumi-command over the pinned SSH host keys, pulumi-tls and pulumi-random for the key material,
pulumi-kubernetes for the add-ons through the VIP), from the offline lab bundle (after an `up` with
one worker off the bridge, which must fail naming it and leave it untouched); then a preview with
no changes, a change that re-runs only the steps it affects, workers 2 -> 3 -> 2 (the removed one
drained and deleted first), and a `destroy` that leaves the hosts clean and no state behind.

The same stack description as test_node_cluster.py, another driver: there the recorded graph is
replayed so that the tier runs where the plugins are not installed; here the engine runs it, and
skips naming what is missing otherwise. The hosts are existing hosts, so the program's login key is
the stack's `sshPrivateKey` secret, authorised on each node by its cloud-init (as an operator
authorises it on a machine made elsewhere).
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.bundle_server import LabBundleServer
from tests.engine.conftest import Project, make_project
from tests.engine.state import assert_no_secret_in_clear, deployment, pulumi
from tests.guests.drills import wait_for
from tests.guests.engine_run import changed_names, engine, ops_by_name
from tests.nodes.config import CP_NAMES, ETCD_NAMES, LB_NAMES, WORKER_NAMES
from tests.nodes.containers import NodeLab
from tests.nodes.stack import NodeStack
from tests.nodes.tunables import KubeletTunables
from tests.support.lab_artifacts import lab_binary, lab_pins

pytestmark = pytest.mark.cluster

STACK = "nodes"
EXTRA_WORKER = "worker3"
READY_TIMEOUT_S = 600.0
# What a host keeps of the program after destroy: none of these running, no static pod, no VIP.
SERVICES = ("kubelet", "etcd", "haproxy", "keepalived")


def _set_secret(project: Project, key: str, value: str) -> None:
    """`pulumi config set --secret`, as the user does; the encrypted value is kept in project.config."""
    pulumi(project, "stack", "init")
    pulumi(project, "config", "set", "--secret", f"k8s-ha:{key}", stdin=value)
    written = yaml.safe_load((project.directory / f"Pulumi.{project.stack}.yaml").read_text())
    project.config[key] = written["config"][f"k8s-ha:{key}"]  # {"secure": "v1:..."}


def _with_workers(config: dict[str, Any], every_worker: list[dict[str, Any]], workers: tuple[str, ...]
                  ) -> dict[str, Any]:
    """`config` with the worker pool holding `workers`, taken from `every_worker` (the booted ones)."""
    changed = copy.deepcopy(config)
    changed["workerPools"][0]["nodes"] = [copy.deepcopy(n) for n in every_worker if n["name"] in workers]
    return changed


class Kubectl:
    """kubectl with the kubeconfig the stack exports, from the operator's place on the bridge."""

    def __init__(self, nodes: NodeStack, project: Project, binary: Path, work: Path) -> None:
        self.nodes, self.binary = nodes, binary
        self.kubeconfig = work / "kubeconfig"
        exported = json.loads(pulumi(project, "stack", "output", "--json", "--show-secrets"))
        self.kubeconfig.write_text(exported["kubeconfig"])
        self.kubeconfig.chmod(0o600)

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), "--kubeconfig", str(self.kubeconfig), "--request-timeout=10s", *args]
        return subprocess.run(self.nodes.netns_argv(argv), capture_output=True, text=True, timeout=60, check=False)

    def node_objects(self) -> list[dict[str, Any]] | None:
        """The Node objects, or None while the API does not answer."""
        listed = self("get", "nodes", "-o", "json")
        return json.loads(listed.stdout)["items"] if listed.returncode == 0 else None

    def ready_nodes(self) -> set[str]:
        return {item["metadata"]["name"] for item in self.node_objects() or []
                if any(c["type"] == "Ready" and c["status"] == "True" for c in item["status"]["conditions"])}

    def node_names(self) -> set[str] | None:
        items = self.node_objects()
        return None if items is None else {item["metadata"]["name"] for item in items}


def test_the_program_makes_changes_and_destroys_the_cluster_with_the_real_engine(
        engine_installed: None, node_rootfs: Path, lab_artifacts: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    kubectl_binary = lab_binary(lab_artifacts, "kubectl")
    pins = lab_pins(lab_artifacts)
    work = tmp_path_factory.mktemp("nodes-engine")
    lab = NodeLab(work)
    served = LabBundleServer(lab, lab_artifacts / "bundle", work / "registry")
    all_workers = (*WORKER_NAMES, EXTRA_WORKER)
    with KubeletTunables() as tunables, lab, served:
        nodes = NodeStack(lab, node_rootfs, work / "cluster", pins, workers=all_workers)
        try:
            print(f"start -> SSH (s): {nodes.boot()}")
            every_worker = nodes.config["workerPools"][0]["nodes"]
            project = make_project(work / "project", STACK, _with_workers(nodes.config, every_worker, WORKER_NAMES))
            _set_secret(project, "sshPrivateKey", (nodes.ssh_dir / "id").read_text())
            project.write()
            _cycle(nodes, project, copy.deepcopy(project.config), every_worker, kubectl_binary, work)
        finally:
            failed = nodes.close()
    leftovers = lab.leftovers()
    assert not failed and not leftovers, f"the test left things behind: {failed} {leftovers}"
    assert not tunables.changed(), f"machine-global tunables not restored: {tunables.changed()}"


def _unplugged_node_is_named(nodes: NodeStack, project: Project, name: str) -> None:
    """Bad input: a node that is not on the bridge. `up` fails naming it and what to check, within
    the existing-host dial budget, and nothing on that node has changed; plugged in again, the
    next `up` carries on from there."""
    node = nodes.node_lab.nodes[name]
    node.cable(plugged=False)
    try:
        started = time.monotonic()
        code, _, text = engine(nodes.netns_argv, project, "up")
        print(f"up with {name} off the bridge: exit {code} after {time.monotonic() - started:.0f} s")
    finally:
        node.cable(plugged=True)
    assert code != 0
    assert f"node {name} ({nodes.ip(name)}): does not answer SSH from this machine" in text, text[-3000:]
    assert "nodes[].ip" in text and "bootTimeoutS" not in text, text[-3000:]  # an existing host: no boot wait
    untouched = nodes.run(name, "test ! -e /var/lib/k8s-ha && ! systemctl is-active --quiet kubelet", check=False)
    assert untouched.returncode == 0, f"{name} was changed although it could not be reached"


def _cycle(nodes: NodeStack, project: Project, config: dict[str, Any], every_worker: list[dict[str, Any]],
           kubectl_binary: Path, work: Path) -> None:
    base = [*LB_NAMES, *ETCD_NAMES, *CP_NAMES, *WORKER_NAMES]
    try:
        code, _, text = engine(nodes.netns_argv, project, "preview")
        assert code == 0, text
        _unplugged_node_is_named(nodes, project, WORKER_NAMES[0])
        started = time.monotonic()
        code, _, text = engine(nodes.netns_argv, project, "up")
        assert code == 0, text
        kubectl = Kubectl(nodes, project, kubectl_binary, work)
        wait_for(lambda: kubectl.ready_nodes() == {*CP_NAMES, *WORKER_NAMES}, "every node Ready", READY_TIMEOUT_S)
        print(f"engine up -> every node Ready after {time.monotonic() - started:.0f} s")
        existing = {r["urn"] for r in deployment(project).get("resources", [])}
        assert {f"{n}-ready" for n in base} <= {u.rsplit("::", 1)[1] for u in existing}
        assert_no_secret_in_clear(project)

        code, ops, text = engine(nodes.netns_argv, project, "preview")
        assert code == 0 and not changed_names(ops, existing), (changed_names(ops, existing), text)

        # A change to the load balancers' HAProxy settings re-runs their steps and nothing else.
        changed = copy.deepcopy(config)
        changed["loadBalancer"]["haproxy"] = {"clientTimeoutS": 1234}
        project.config = changed
        project.write()
        code, ops, text = engine(nodes.netns_argv, project, "up")
        assert code == 0, text
        assert changed_names(ops, existing) == {"lb1-loadbalancer": "update", "lb2-loadbalancer": "update"}, (
            changed_names(ops, existing))
        for lb in LB_NAMES:
            assert "timeout client 1234s" in nodes.run(lb, "cat /etc/haproxy/haproxy.cfg").stdout

        # Workers 2 -> 3: the new worker joins; nothing that exists is replaced or deleted.
        config = changed
        project.config = _with_workers(config, every_worker, (*WORKER_NAMES, EXTRA_WORKER))
        project.write()
        code, ops, text = engine(nodes.netns_argv, project, "up")
        assert code == 0, text
        touched = changed_names(ops, existing)
        assert not {n: op for n, op in touched.items() if op not in ("update",)}, touched
        created = {n for n, op in ops_by_name(ops).items() if op == "create"}
        assert f"{EXTRA_WORKER}-ready" in created, sorted(created)
        wait_for(lambda: EXTRA_WORKER in kubectl.ready_nodes(), f"{EXTRA_WORKER} Ready", READY_TIMEOUT_S)
        print(f"workers 2 -> 3: updated {sorted(touched)}")

        # Workers 3 -> 2: the removed worker is drained and its Node deleted, then reset.
        existing = {r["urn"] for r in deployment(project).get("resources", [])}
        project.config = config
        project.write()
        code, ops, text = engine(nodes.netns_argv, project, "up")
        assert code == 0, text
        deleted = {n for n, op in ops_by_name(ops).items() if op == "delete"}
        assert f"{EXTRA_WORKER}-ready" in deleted, sorted(deleted)
        assert EXTRA_WORKER not in (kubectl.node_names() or {EXTRA_WORKER}), "the removed worker's Node is left"
        assert nodes.run(EXTRA_WORKER, "systemctl is-active kubelet", check=False).stdout.strip() != "active"
        assert kubectl.ready_nodes() == {*CP_NAMES, *WORKER_NAMES}
        print(f"workers 3 -> 2: deleted {sorted(deleted)}")
    finally:
        code, _, text = engine(nodes.netns_argv, project, "destroy")
    assert code == 0, text
    after = deployment(project)
    assert not after.get("resources") and not after.get("pending_operations"), after
    for name in base:
        active = nodes.run(name, f"systemctl is-active {' '.join(SERVICES)} || true").stdout.split()
        assert "active" not in active, (name, dict(zip(SERVICES, active, strict=False)))
        manifests = nodes.run(name, "ls /etc/kubernetes/manifests 2>/dev/null || true").stdout.split()
        assert not manifests, (name, manifests)
    vip = str(config["network"]["vip"])
    # Nobody holds the VIP: the connect gets no ARP answer and is given up after 5 s.
    tcp = subprocess.run(nodes.netns_argv(["timeout", "5", "bash", "-c", f"exec 3<>/dev/tcp/{vip}/6443"]),
                         timeout=30, check=False, capture_output=True)
    assert tcp.returncode != 0, "the VIP still answers after destroy"
