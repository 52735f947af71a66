"""Day-2 operations on the node-container cluster, by the program, on one cluster in file order.

A rolling Kubernetes upgrade: the cluster is made on the release the lab's upgrade starts from
(bundle-from: the newest 1.35 patch the proxy serves), then versions.kubernetes and the pins change
to the default release (bundle) and the changed steps run as a second `up` runs them. Both bundles
are served at once, as an operator serves the old and the new release during an upgrade. Measured
while it runs (bench/results/upgrade.json, with the date and the commit): the longest gap in
authenticated API reads through the VIP (every 100 ms, each bounded by 1 s), whether the test
Deployment behind its Service ever had no ready endpoint (sampled every 0.5 s through the API),
the total time and each node's upgrade time. The goals (no failed read longer than 2 s, never no
endpoint) are reported and asserted. Refused with the reason, nothing changed: the upgrade while a
node is NotReady (its kubelet stopped), and afterwards a downgrade back to the old release.

An etcd restore through the stack (etcd.restore): an object written, a snapshot taken, the object
deleted, the snapshot named in the stack (refused first with a wrong checksum, nothing changed),
the object found again; the time to restore goes to bench/results/restore.json.

Certificate renewal: the stack's state is aged until every leaf certificate the program issued is inside
the renewal window (pki.earlyRenewalHours), as a cluster is some eleven months after it was made;
`validate --stack-outputs` warns about each; the next `up` issues them again (as pulumi-tls does
inside the window), etcd takes its new certificates one member at a time, and each master's
k8s-certs step renews kubeadm's certificates and restarts its control plane, one master at a time,
while the API is read through the VIP every 100 ms (bench/results/renewal.json).

Master replacement: replacing two masters at once is refused against the stack's `nodes` output
(most of the running masters would leave); then cp3 is replaced by a new master cp4 in one `up`:
cp4 joins, the front door's backends follow, cp3 leaves the cluster (drained, its Node deleted,
`kubeadm reset`), the external etcd is untouched, the API answering throughout
(bench/results/replacement.json).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k8s_ha.model import versions
from k8s_ha.model.certificates import parse_time, step_report
from tests.cluster.checklist import (
    NAMESPACE,
    SERVICE,
    agnhost_image,
    deploy_echo,
    echo_pods,
    etcd_health,
    haproxy_backends,
    nodes_ready,
    run_checklist,
    wait_all_ready,
    wait_kube_system_ready,
)
from tests.cluster.cluster import Roles
from tests.cluster.drill import api_probe, longest_gap
from tests.guests.drills import etcdctl, wait_for
from tests.nodes.config import CP_NAMES, ETCD_NAMES, LB_NAMES, WORKER_NAMES, node_entry
from tests.nodes.lab_cluster import lab_cluster
from tests.nodes.stack import NodeClusterStack
from tests.support.lab_artifacts import UPGRADE_FROM_BUNDLE, lab_pins, lab_versions
from tests.support.provenance import provenance

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
RESULTS_FILE = ROOT / "bench" / "results" / "upgrade.json"
READY_TIMEOUT_S = 900
API_GAP_GOAL_S = 2.0
OLD, NEW = lab_versions(upgrade_from=True).kubernetes, lab_versions().kubernetes
RESTORE_FILE = ROOT / "bench" / "results" / "restore.json"
RENEWAL_FILE = ROOT / "bench" / "results" / "renewal.json"
REPLACEMENT_FILE = ROOT / "bench" / "results" / "replacement.json"
SNAPSHOT_PORT = 8099  # the operator's HTTP server for the snapshot, on the lab bridge
RESULTS: dict[str, Any] = {}
RESTORE: dict[str, Any] = {}
RENEWAL: dict[str, Any] = {}
REPLACEMENT: dict[str, Any] = {}
KUBEADM_CERTS = {"apiserver", "apiserver-kubelet-client", "front-proxy-client", "admin.conf",
                 "controller-manager.conf", "scheduler.conf", "kubelet-client"}


@pytest.fixture(scope="module")
def cluster(node_rootfs: Path, lab_artifacts: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[NodeClusterStack]:
    RESULTS.clear()
    RESTORE.clear()
    RENEWAL.clear()
    REPLACEMENT.clear()
    RESULTS.update(versions={"from": OLD, "to": NEW})
    work = tmp_path_factory.mktemp("upgrade")

    def write_results() -> None:
        for path, results in ((RESULTS_FILE, RESULTS), (RESTORE_FILE, RESTORE), (RENEWAL_FILE, RENEWAL),
                              (REPLACEMENT_FILE, REPLACEMENT)):
            if results:
                path.write_text(json.dumps({**provenance(), **results}, indent=2, default=str) + "\n")
                print(f"wrote {path.relative_to(ROOT)}")

    with lab_cluster(work, node_rootfs, lab_artifacts, upgrade_from=True, on_close=write_results) as (stack, _):
        t0 = time.monotonic()
        stack.boot()
        stack.bootstrap()
        wait_all_ready(stack, READY_TIMEOUT_S)
        RESULTS["cluster_on_old_release_s"] = round(time.monotonic() - t0, 1)
        yield stack


def kubelet_versions(c: NodeClusterStack) -> dict[str, str]:
    return {n["metadata"]["name"]: n["status"]["nodeInfo"]["kubeletVersion"].removeprefix("v")
            for n in c.kubectl_json("get", "nodes")["items"]}


def control_plane_version(c: NodeClusterStack) -> str:
    """What kubeadm records as the cluster's version (ClusterConfiguration in kubeadm-config)."""
    text = c.kubectl_json("get", "configmap", "-n", "kube-system", "kubeadm-config")["data"]["ClusterConfiguration"]
    return next(line.split()[1] for line in text.splitlines() if line.startswith("kubernetesVersion:"))


def images_of(c: NodeClusterStack, kind: str, name: str) -> list[str]:
    spec = c.kubectl_json("get", kind, "-n", "kube-system", name)["spec"]["template"]["spec"]
    return [container["image"] for container in spec["containers"]]


def static_pod_images(c: NodeClusterStack) -> set[str]:
    pods = c.kubectl_json("get", "pods", "-n", "kube-system", "-l", "tier=control-plane")["items"]
    return {p["spec"]["containers"][0]["image"].rsplit(":", 1)[1] for p in pods}


class EndpointWatch:
    """Ready endpoints of the test Service, sampled every 0.5 s through the API until `stop()`."""

    def __init__(self, c: NodeClusterStack) -> None:
        self.c, self.samples = c, []  # (monotonic time, ready endpoint count)
        self.unanswered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _ready(self) -> int:
        slices = self.c.kubectl_json("get", "endpointslices", "-n", NAMESPACE,
                                     "-l", f"kubernetes.io/service-name={SERVICE}")["items"]
        return sum(1 for s in slices for e in s.get("endpoints") or [] if e.get("conditions", {}).get("ready"))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), self._ready()))
            except Exception:  # the API behind the VIP can miss one read; the API probe counts those
                self.unanswered += 1
            self._stop.wait(0.5)

    def __enter__(self) -> EndpointWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def report(self) -> dict[str, Any]:
        counts = [n for _t, n in self.samples]
        return {"samples": len(counts), "unanswered_samples": self.unanswered, "min_ready": min(counts, default=None),
                "samples_with_no_ready_endpoint": sum(1 for n in counts if n == 0)}


@dataclasses.dataclass
class Probed:
    """One `up` (`cluster.update`) run while the API is read through the VIP every 100 ms."""
    seconds: dict[str, float]  # per changed step
    spans: dict[str, tuple[float, float]]  # per step: (start, end), seconds from the start of the `up`
    total_s: float
    api: dict[str, Any]  # longest_gap's figures

    def order(self, marker: str) -> list[str]:
        """The steps whose names contain `marker`, by start."""
        return [n for n, _span in sorted(self.spans.items(), key=lambda kv: kv[1][0]) if marker in n]

    def assert_one_at_a_time(self, steps: list[str]) -> None:
        for first, second in itertools.pairwise(steps):
            assert self.spans[first][1] <= self.spans[second][0], (first, second)

    def report(self) -> dict[str, Any]:
        return {"total_s": round(self.total_s, 1), "steps_s": self.seconds,
                "step_spans_s": {n: (round(a, 1), round(b, 1)) for n, (a, b) in self.spans.items()},
                "api": {k: v for k, v in self.api.items() if k != "first_15_s"}, "api_gap_goal_s": API_GAP_GOAL_S}


def probed_update(c: NodeClusterStack, during: contextlib.AbstractContextManager[Any] | None = None) -> Probed:
    """`c.update()` under the API probe (and `during`, entered around it)."""
    spans: dict[str, tuple[float, float]] = {}
    probe = api_probe(c, 3600)
    try:
        time.sleep(2.0)
        with during or contextlib.nullcontext():
            t0 = time.monotonic()
            seconds = c.update(on_done=lambda name, start, end: spans.__setitem__(name, (start - t0, end - t0)))
            total_s = time.monotonic() - t0
            time.sleep(2.0)
        api = longest_gap(probe, t0, t0 + total_s)
    finally:
        probe.stop()
    return Probed(seconds, spans, total_s, api)


def serve_echo(c: NodeClusterStack, lab_artifacts: Path) -> None:
    """The test Deployment (a pod per worker) behind its Service, with a PodDisruptionBudget of
    `minAvailable: 1`; idempotent, so that a test run alone (-k) has it too."""
    _layout, path = agnhost_image(lab_artifacts)
    deploy_echo(c, f"registry.k8s.io/{path}")
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
           "metadata": {"name": SERVICE, "namespace": NAMESPACE},
           "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": SERVICE}}}}
    c.kubectl("apply", "-f", "-", stdin=json.dumps(pdb))


def validate(stack_file: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`python -m k8s_ha validate --stack-file STACK_FILE OPTIONS...`, as the user runs it."""
    return subprocess.run([str(ROOT / "venv" / "bin" / "python"), "-m", "k8s_ha", "validate", "--stack-file",
                           str(stack_file), *options], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_the_cluster_runs_the_release_the_upgrade_starts_from(cluster: NodeClusterStack) -> None:
    assert versions.upgrade_problem(OLD, NEW) is None, (OLD, NEW)  # the lab's pair is an upgrade kubeadm makes
    assert set(kubelet_versions(cluster).values()) == {OLD}
    assert control_plane_version(cluster) == f"v{OLD}"
    assert static_pod_images(cluster) == {f"v{OLD}"}
    assert cluster.graph.stack_outputs["kubernetesVersion"] == OLD


def _upgraded_config(c: NodeClusterStack, lab_artifacts: Path) -> dict[str, Any]:
    config = copy.deepcopy(c.config)
    config["versions"]["kubernetes"] = NEW
    config["artifacts"].update(lab_pins(lab_artifacts))
    return config


def test_an_upgrade_while_a_node_is_not_ready_is_refused_and_changes_no_version(
        cluster: NodeClusterStack, lab_artifacts: Path) -> None:
    victim = WORKER_NAMES[-1]
    old_config = cluster.config
    cluster.run(victim, "systemctl stop kubelet")
    try:
        wait_for(lambda: not nodes_ready(cluster)[victim], f"{victim} NotReady", 300, 1)
        cluster.config = _upgraded_config(cluster, lab_artifacts)
        refused = rf"step cp1-k8s-upgrade on cp1 exited 1:[\s\S]*Nodes not Ready: {victim}"
        with pytest.raises(cluster.error, match=refused):
            cluster.update()
        assert set(kubelet_versions(cluster).values()) == {OLD}
        assert control_plane_version(cluster) == f"v{OLD}"
        assert cluster.run("cp1", "kubeadm version -o short").stdout.strip() == f"v{OLD}"
    finally:
        cluster.run(victim, "systemctl start kubelet")
        cluster.config = old_config
    wait_all_ready(cluster, 300)


def test_a_rolling_upgrade_keeps_the_api_answering_and_the_service_served(
        cluster: NodeClusterStack, lab_artifacts: Path) -> None:
    serve_echo(cluster, lab_artifacts)
    cluster.config = _upgraded_config(cluster, lab_artifacts)
    endpoints = EndpointWatch(cluster)
    up = probed_update(cluster, during=endpoints)
    order = up.order("-k8s-upgrade")
    per_node = {node: round(sum(b - a for s, (a, b) in up.spans.items() if s.startswith(f"{node}-k8s-upgrade")), 1)
                for node in (*CP_NAMES, *WORKER_NAMES)}
    RESULTS["upgrade"] = {
        **up.report(), "per_node_s": per_node, "upgrade_order": order, "endpoints": endpoints.report(),
        "unchanged_steps": sorted(r.name for r in cluster.commands if r.name not in up.seconds)}
    print(json.dumps(RESULTS["upgrade"], indent=1, default=str))
    # kubeadm's order, one node at a time: the first master, the others, then each worker drained.
    assert order == [f"{n}-k8s-upgrade" for n in CP_NAMES] + [
        f"{w}-k8s-upgrade{p}" for w in WORKER_NAMES for p in ("-drain", "", "-uncordon")]
    up.assert_one_at_a_time(order)
    assert set(kubelet_versions(cluster).values()) == {NEW}
    assert control_plane_version(cluster) == f"v{NEW}"
    assert static_pod_images(cluster) == {f"v{NEW}"}
    assert images_of(cluster, "daemonset", "kube-proxy")[0].endswith(f":v{NEW}")
    assert images_of(cluster, "deployment", "coredns")[0].endswith(f":{versions.COREDNS_TAGS[int(NEW.split('.')[1])]}")
    assert cluster.graph.stack_outputs["kubernetesVersion"] == NEW
    assert not any(n["spec"].get("unschedulable") for n in cluster.kubectl_json("get", "nodes")["items"])
    assert up.api["longest_gap_s"] <= API_GAP_GOAL_S, up.api
    assert endpoints.report()["samples_with_no_ready_endpoint"] == 0, endpoints.report()


def test_after_the_upgrade_a_second_update_changes_nothing_and_the_checklist_passes(
        cluster: NodeClusterStack, lab_artifacts: Path) -> None:
    assert cluster.update() == {}
    # Pods the drains moved (metrics-server's) report ready only after their first scrapes.
    wait_kube_system_ready(cluster, 300)
    _layout, path = agnhost_image(lab_artifacts)
    again = run_checklist(cluster, f"registry.k8s.io/{path}")
    RESULTS["checklist_after_upgrade"] = again
    assert again["nodes_ready"] == {n: True for n in (*CP_NAMES, *WORKER_NAMES)}
    assert all(state == "Running" for state in again["kube_system_pods"].values()), again["kube_system_pods"]
    assert again["etcd_health"] == {n: True for n in ETCD_NAMES}
    assert again["haproxy"] == {lb: {cp: "UP" for cp in CP_NAMES} for lb in LB_NAMES}
    assert set(again["service_answers"]) == set(again["echo_pods"]), again


def test_a_downgrade_is_refused_on_the_nodes_with_the_reason(cluster: NodeClusterStack, lab_artifacts: Path) -> None:
    """What a plain `pulumi up` would do with the old version back in the stack (the CLI refuses it
    before the engine from the stack's kubernetesVersion): each node's preparation refuses first."""
    old_config = cluster.config
    cluster.config = copy.deepcopy(old_config)
    cluster.config["versions"]["kubernetes"] = OLD
    cluster.config["artifacts"].update(lab_pins(lab_artifacts, UPGRADE_FROM_BUNDLE))
    try:
        with pytest.raises(cluster.error, match=f"Kubernetes {OLD} is older than the {NEW} the cluster runs"):
            cluster.update()
    finally:
        cluster.config = old_config
        cluster.rerun_program()
    assert set(kubelet_versions(cluster).values()) == {NEW}
    done = validate(ROOT / "Pulumi.dev.yaml", "--running-kubernetes", "1.37.0")
    assert done.returncode == 2 and "kubeadm does not downgrade" in done.stderr


def _configmap(c: NodeClusterStack) -> dict[str, str] | None:
    done = c.kubectl("get", "configmap", "-n", "default", "restore-probe", "-o", "json", "--ignore-not-found")
    return json.loads(done.stdout)["data"] if done.stdout.strip() else None


def _with_restore(c: NodeClusterStack, url: str, sha256: str) -> dict[str, Any]:
    config = copy.deepcopy(c.config)
    config["etcd"]["restore"] = {"url": url, "sha256": sha256}
    return config


def test_an_etcd_restore_through_the_stack_brings_back_what_the_snapshot_holds(
        cluster: NodeClusterStack, tmp_path: Path) -> None:
    cluster.kubectl("create", "configmap", "restore-probe", "-n", "default", "--from-literal=written=before")
    served = tmp_path / "served"
    served.mkdir()
    snapshot = served / "etcd-snapshot.db"
    saved = etcdctl(cluster, "snapshot", "save", str(snapshot), endpoints=cluster.etcd_endpoints()[:1], timeout=30)
    assert saved.returncode == 0, saved.stderr
    sha256 = hashlib.sha256(snapshot.read_bytes()).hexdigest()
    cluster.kubectl("delete", "configmap", "-n", "default", "restore-probe")
    assert _configmap(cluster) is None
    url = f"http://{cluster.node_lab.client_ip}:{SNAPSHOT_PORT}/{snapshot.name}"
    server = subprocess.Popen(cluster.netns_argv([sys.executable, "-m", "http.server", str(SNAPSHOT_PORT),
                                                  "--bind", cluster.node_lab.client_ip, "--directory", str(served)]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # A snapshot whose checksum does not match is refused on every member; etcd is untouched.
        cluster.config = _with_restore(cluster, url, "0" * 64)
        with pytest.raises(cluster.error, match="checksum mismatch for the etcd snapshot"):
            cluster.update()
        assert etcd_health(cluster) == {n: True for n in ETCD_NAMES} and _configmap(cluster) is None
        cluster.config = _with_restore(cluster, url, sha256)
        t0 = time.monotonic()
        seconds = cluster.update()
        restore_s = time.monotonic() - t0
        wait_all_ready(cluster, 300)
        ready_s = time.monotonic() - t0
    finally:
        server.terminate()
        server.wait(10)
    RESTORE.update(snapshot_bytes=snapshot.stat().st_size, steps_s=seconds, restore_s=round(restore_s, 1),
                   every_node_ready_after_s=round(ready_s, 1), object_back=_configmap(cluster))
    print(json.dumps(RESTORE, indent=1, default=str))
    assert set(seconds) == {*(f"{n}-etcd-restore" for n in ETCD_NAMES), "etcd-restored",
                            *(f"{n}-k8s-restart-control-plane" for n in CP_NAMES)}, seconds
    assert _configmap(cluster) == {"written": "before"}
    assert etcd_health(cluster) == {n: True for n in ETCD_NAMES}
    wait_kube_system_ready(cluster, 300)
    assert cluster.update() == {}  # once per snapshot: the next `up` restores nothing


def _master_certificates(c: NodeClusterStack) -> dict[str, dict[str, str]]:
    """What each master's k8s-certs step last reported (the stack's `certificates`, per master)."""
    return {cp: step_report(c.stdout[f"{cp}-k8s-certs"]) for cp in CP_NAMES}


def test_certificates_inside_the_renewal_window_are_renewed_by_up_without_an_api_outage(
        cluster: NodeClusterStack, tmp_path: Path) -> None:
    pki = cluster.config.setdefault("pki", {})
    validity, window = pki.get("certValidityHours", 8760), pki.get("earlyRenewalHours", 720)
    before = _master_certificates(cluster)
    for cp, reported in before.items():
        assert reported.keys() >= KUBEADM_CERTS, (cp, reported)
    assert "super-admin.conf" in before[CP_NAMES[0]]
    issued = dict(cluster.graph.stack_outputs["certificates"])
    program = {name: end for name, end in issued.items() if "/" not in name}
    assert {"kubernetes-ca", "etcd-ca", "front-proxy-ca", "apiserver-etcd-client", "admin-client"} <= program.keys()

    # Eleven months on: the state's end times are what pulumi-tls judges renewal by.
    aged_h = validity - window + 1
    assert cluster.mocks.age_certificates(aged_h)
    aged = {name: (parse_time(end) - dt.timedelta(hours=aged_h)).strftime("%Y-%m-%dT%H:%M:%SZ")
            for name, end in program.items()}
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"certificates": aged, "kubernetesVersion": NEW}))
    done = validate(ROOT / "Pulumi.dev.yaml", "--stack-outputs", str(outputs))
    assert done.returncode == 0, done.stderr
    assert "certificate apiserver-etcd-client expires in" in done.stderr and "`up` renews it" in done.stderr
    assert "CA kubernetes-ca" not in done.stderr  # ten years: not inside the window

    up = probed_update(cluster)
    after = _master_certificates(cluster)
    renewed = dict(cluster.graph.stack_outputs["certificates"])
    RENEWAL.update(
        aged_hours=aged_h, window_hours=window, **up.report(), masters_before=before, masters_after=after,
        program_renewed=sorted(n for n in program if renewed.get(n) != aged[n]))
    print(json.dumps(RENEWAL, indent=1, default=str))
    # Every leaf the program issued is new; the CAs are not.
    assert RENEWAL["program_renewed"] == sorted(n for n in program if not n.endswith("-ca")), RENEWAL
    # One master at a time, each renewing kubeadm's certificates (the kubelet rotates its own).
    assert up.order("-k8s-certs") == [f"{cp}-k8s-certs" for cp in CP_NAMES]
    up.assert_one_at_a_time(up.order("-k8s-certs"))
    for cp in CP_NAMES:
        for name in KUBEADM_CERTS - {"kubelet-client"}:
            assert parse_time(after[cp][name]) > parse_time(before[cp][name]), (cp, name)
    assert {f"{n}-etcd-member" for n in ETCD_NAMES} <= up.seconds.keys(), up.seconds
    assert etcd_health(cluster) == {n: True for n in ETCD_NAMES}
    assert up.api["longest_gap_s"] <= API_GAP_GOAL_S, up.api
    wait_all_ready(cluster, 300)
    assert cluster.update() == {}  # renewed: the next `up` changes nothing


def _validate_against(c: NodeClusterStack, config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`validate --stack-outputs` of `config` against what the stack exports now."""
    stack_file, outputs = tmp_path / "Pulumi.nodes.yaml", tmp_path / "outputs.json"
    stack_file.write_text(json.dumps({"config": {f"k8s-ha:{k}": v for k, v in config.items()}}))
    outputs.write_text(json.dumps({"nodes": c.graph.stack_outputs["nodes"]}))
    return validate(stack_file, "--stack-outputs", str(outputs))


def _gains(c: NodeClusterStack, name: str) -> float:
    """A host the stack gains (its pinned key made, its container booted); seconds to SSH."""
    c.rerun_program()
    c.enlist(name)
    return c.boot((name,))[name]


def _left(c: NodeClusterStack, name: str) -> list[str]:
    """What `kubeadm reset` leaves on a node that left: nothing but the word."""
    return c.run(name, "ls -A /etc/kubernetes/manifests; test ! -e /etc/kubernetes/kubelet.conf && echo reset",
                 check=False).stdout.split()


def test_a_master_replaced_in_one_up_leaves_cleanly_and_the_front_door_follows(
        cluster: NodeClusterStack, tmp_path: Path) -> None:
    new, old = "cp4", CP_NAMES[-1]
    entry = node_entry(new, cluster.new_host_key(new))
    members_before = etcdctl(cluster, "member", "list", endpoints=cluster.etcd_endpoints()[:1]).stdout

    # Two of three masters at once: refused before anything runs, with the reason.
    too_many = copy.deepcopy(cluster.config)
    too_many["controlPlane"]["nodes"] = [too_many["controlPlane"]["nodes"][0], entry]
    refused = _validate_against(cluster, too_many, tmp_path)
    assert refused.returncode == 2 and "would leave at once, 1 of the 3 running masters stay" in refused.stderr, (
        refused.stderr)

    replaced = copy.deepcopy(cluster.config)
    replaced["controlPlane"]["nodes"] = [n for n in replaced["controlPlane"]["nodes"] if n["name"] != old] + [entry]
    assert _validate_against(cluster, replaced, tmp_path).returncode == 0
    cluster.config = replaced
    boot_s = _gains(cluster, new)
    masters = (*CP_NAMES[:-1], new)
    up = probed_update(cluster)
    cluster.roles = Roles(LB_NAMES, ETCD_NAMES, masters, cluster.roles.workers)
    nodes = {n["metadata"]["name"]: n for n in cluster.kubectl_json("get", "nodes")["items"]}
    REPLACEMENT["master"] = {"removed": old, "added": new, "node_boot_s": boot_s, **up.report(),
                             "nodes": sorted(nodes), "haproxy": haproxy_backends(cluster)}
    print(json.dumps(REPLACEMENT["master"], indent=1, default=str))
    assert {f"{new}-k8s-join", f"{new}-k8s-certs", f"{old}-k8s-join", f"{old}-ready"} <= up.seconds.keys(), up.seconds
    # The engine's order: the new master joins before the old one leaves.
    up.assert_one_at_a_time([f"{new}-k8s-join", f"{old}-k8s-join"])
    assert sorted(nodes) == sorted((*masters, *WORKER_NAMES))
    assert "node-role.kubernetes.io/control-plane" in nodes[new]["metadata"]["labels"]
    assert _left(cluster, old) == ["reset"]  # kubeadm reset: no static pods, no kubelet.conf
    assert REPLACEMENT["master"]["haproxy"] == {lb: {cp: "UP" for cp in masters} for lb in LB_NAMES}
    assert etcd_health(cluster) == {n: True for n in ETCD_NAMES}
    assert etcdctl(cluster, "member", "list", endpoints=cluster.etcd_endpoints()[:1]).stdout == members_before
    assert up.api["longest_gap_s"] <= API_GAP_GOAL_S, up.api
    wait_all_ready(cluster, 300)
    assert cluster.update() == {}


def test_a_worker_replaced_in_one_up_is_drained_before_it_leaves_and_the_service_stays_served(
        cluster: NodeClusterStack, lab_artifacts: Path) -> None:
    serve_echo(cluster, lab_artifacts)
    new, old = "worker3", WORKER_NAMES[-1]
    entry = node_entry(new, cluster.new_host_key(new))
    replaced = copy.deepcopy(cluster.config)
    pool = replaced["workerPools"][0]
    pool["nodes"] = [n for n in pool["nodes"] if n["name"] != old] + [entry]
    cluster.config = replaced
    boot_s = _gains(cluster, new)
    workers = (*WORKER_NAMES[:-1], new)
    endpoints = EndpointWatch(cluster)
    up = probed_update(cluster, during=endpoints)
    cluster.roles = Roles(LB_NAMES, ETCD_NAMES, cluster.roles.masters, workers)
    nodes = sorted(n["metadata"]["name"] for n in cluster.kubectl_json("get", "nodes")["items"])
    REPLACEMENT["worker"] = {"removed": old, "added": new, "node_boot_s": boot_s, **up.report(), "nodes": nodes,
                             "endpoints": endpoints.report(), "echo_pods": echo_pods(cluster)}
    print(json.dumps(REPLACEMENT["worker"], indent=1, default=str))
    # New first (join, then its membership on the first master), then the old one drained and its
    # Node deleted (its membership's delete) before its own join's delete resets it.
    up.assert_one_at_a_time([f"{new}-k8s-join", f"{new}-k8s-membership", f"{old}-k8s-membership",
                             f"{old}-k8s-join"])
    assert nodes == sorted((*cluster.roles.masters, *workers))
    assert _left(cluster, old) == ["reset"]
    assert {p["node"] for p in REPLACEMENT["worker"]["echo_pods"].values()} <= set(workers)
    assert endpoints.report()["samples_with_no_ready_endpoint"] == 0, endpoints.report()
    assert up.api["longest_gap_s"] <= API_GAP_GOAL_S, up.api
    wait_all_ready(cluster, 300)
    assert cluster.update() == {}
