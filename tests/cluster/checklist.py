"""The verification checklist, automated on the lab cluster. Each check observes and returns
what it saw (the tests assert on it, and bench/results/cluster.json keeps it):

* every node Ready; every kube-system pod Running (and its containers ready)
* `etcdctl endpoint health` for every member
* controller-manager and scheduler leases held (holder and the age of the last renewal)
* HAProxy on each load balancer sees every apiserver UP (its admin socket's `show stat`)
* a test Deployment spread across the workers serves through its Service
* DNS resolves a Service name (from inside a pod: agnhost's /dial names the Service)
* metrics-server answers (`kubectl top nodes`)
"""

from __future__ import annotations

import datetime
import json
import shlex
import time
from pathlib import Path
from typing import Any

from tests.cluster.cluster import ClusterSteps as ClusterStack
from tests.guests.drills import DrillError, etcdctl, wait_for
from tests.lab.probe import server_status

NAMESPACE = "k8s-ha-checklist"
SERVICE = "echo"
LEASES = ("kube-controller-manager", "kube-scheduler")
# HAProxy's admin socket, read with the guest's python3 (cloud-init's): no socat/nc in the image.
SHOW_STAT = ("import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock'); "
             "s.sendall(b'show stat\\n'); d = b''\nwhile (c := s.recv(65536)): d += c\nprint(d.decode())")


def agnhost_image(cache: Path) -> tuple[Path, str]:
    """The agnhost layout scripts/lab-artifacts built and its upstream repository path:tag."""
    (layout,) = sorted((cache / "source" / "images" / "e2e-test-images" / "agnhost").glob("*/index.json"))
    return layout.parent, f"e2e-test-images/agnhost:{layout.parent.name}"


def nodes_ready(c: ClusterStack) -> dict[str, bool]:
    nodes = c.kubectl_json("get", "nodes")["items"]
    return {n["metadata"]["name"]: any(x["type"] == "Ready" and x["status"] == "True"
                                       for x in n["status"].get("conditions", [])) for n in nodes}


def kube_system_pods(c: ClusterStack) -> dict[str, str]:
    """pod -> 'Running' when running with every container ready, else its phase and what is not ready."""
    out = {}
    for pod in c.kubectl_json("get", "pods", "-n", "kube-system")["items"]:
        phase = pod["status"].get("phase", "?")
        waiting = [s["name"] for s in pod["status"].get("containerStatuses", []) if not s.get("ready")]
        out[pod["metadata"]["name"]] = phase if phase != "Running" or not waiting else f"Running, not ready: {waiting}"
    return out


def wait_kube_system_ready(c: ClusterStack, timeout: float) -> None:
    """Until every kube-system pod is Running with its containers ready (a pod that was moved or
    restarted reports ready only after its first successful probes); on timeout, what is not."""
    try:
        wait_for(lambda: all(v == "Running" for v in kube_system_pods(c).values()),
                 "every kube-system pod Running and ready", timeout, 2)
    except DrillError as timed_out:
        raise AssertionError(f"{timed_out}\n{why_not_ready(c)}") from timed_out


def etcd_health(c: ClusterStack) -> dict[str, bool]:
    out = {}
    for name, endpoint in zip(c.roles.etcd, c.etcd_endpoints(c.roles.etcd), strict=True):
        done = etcdctl(c, "endpoint", "health", endpoints=[endpoint])
        out[name] = done.returncode == 0 and "is healthy" in done.stdout + done.stderr
    return out


def leases(c: ClusterStack) -> dict[str, dict[str, Any]]:
    """component -> holder node, its identity (node_uuid: a new one per process), seconds since its
    last renewal (by the API server's clock)."""
    out = {}
    now = datetime.datetime.now(datetime.UTC)
    for name in LEASES:
        spec = c.kubectl_json("get", "lease", "-n", "kube-system", name)["spec"]
        renewed = datetime.datetime.strptime(spec["renewTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
        out[name] = {"holder": spec["holderIdentity"].split("_")[0], "identity": spec["holderIdentity"],
                     "renewed_s_ago": round((now - renewed).total_seconds(), 1)}
    return out


def haproxy_backends(c: ClusterStack) -> dict[str, dict[str, str]]:
    """LB -> {apiserver: status} from each HAProxy's admin socket."""
    out = {}
    for lb in c.roles.lbs:
        lines = [line for line in c.run(lb, f"python3 -c {shlex.quote(SHOW_STAT)}").stdout.splitlines() if line]
        out[lb] = server_status(lines, "kube-apiserver")
    return out


def deploy_echo(c: ClusterStack, image: str, replicas: int | None = None) -> None:
    """agnhost netexec behind a Service, one pod per worker preferred (soft: a lost worker's pod
    can then be rescheduled onto the survivor). Readiness is probed every second, so a drill's
    time to a Ready replacement is the cluster's and not the probe's period."""
    labels = {"app": SERVICE}
    replicas = replicas or len(c.roles.workers)
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": SERVICE, "namespace": NAMESPACE},
         "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                 {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                     "labelSelector": {"matchLabels": labels}}}]}},
                      "containers": [{"name": "netexec", "image": image, "args": ["netexec", "--http-port=8080"],
                                      "ports": [{"containerPort": 8080}],
                                      "readinessProbe": {"httpGet": {"path": "/hostname", "port": 8080},
                                                         "periodSeconds": 1, "timeoutSeconds": 2}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE, "namespace": NAMESPACE},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}},
    ]
    c.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    done = c.kubectl("rollout", "status", "-n", NAMESPACE, f"deployment/{SERVICE}", "--timeout=900s",
                     timeout=960, check=False)
    if done.returncode != 0:
        raise c.error(f"the test Deployment did not roll out: {done.stderr.strip()[-300:]}\n{why_not_ready(c)}")


def why_not_ready(c: ClusterStack) -> str:
    """What a failed rollout leaves to read: every pod that is not Running and ready, with its node
    and waiting reason, and the cluster's latest warning events."""
    lines = []
    for pod in c.kubectl_json("get", "pods", "-A")["items"]:
        status = pod["status"]
        waiting = {s["name"]: (s.get("state", {}).get("waiting") or s.get("state", {}).get("terminated") or {})
                   .get("reason", "not ready") for s in status.get("containerStatuses", []) if not s.get("ready")}
        if status.get("phase") != "Running" or waiting:
            lines.append(f"{pod['metadata']['namespace']}/{pod['metadata']['name']} on "
                         f"{pod['spec'].get('nodeName', '-')}: {status.get('phase')} {waiting}")
    events = c.kubectl("get", "events", "-A", "--field-selector", "type=Warning", "--sort-by=.lastTimestamp",
                       check=False).stdout.splitlines()
    return "\n".join(["pods not ready:", *lines, "latest warning events:", *events[-25:]])


def echo_pods(c: ClusterStack) -> dict[str, dict[str, str]]:
    """pod -> node, IP and phase of the test Deployment's pods (terminating ones left out)."""
    pods = c.kubectl_json("get", "pods", "-n", NAMESPACE, "-l", f"app={SERVICE}")["items"]
    return {p["metadata"]["name"]: {"node": p["spec"].get("nodeName", ""), "ip": p["status"].get("podIP", ""),
                                    "ready": str(any(x["type"] == "Ready" and x["status"] == "True"
                                                     for x in p["status"].get("conditions", [])))}
            for p in pods if not p["metadata"].get("deletionTimestamp")}


def service_answers(c: ClusterStack, pods: set[str], tries: int = 12, within_s: float = 60) -> set[str]:
    """Pod names answering GET /hostname on the Service's ClusterIP, asked from worker1's host in
    rounds of `tries` until every one of `pods` has answered or `within_s` has passed. A new Service,
    and a new endpoint of it, reach each node's kube-proxy rules a moment after the rollout is done:
    one round right away can see only the pod whose endpoint arrived first."""
    ip = c.kubectl_json("get", "service", "-n", NAMESPACE, SERVICE)["spec"]["clusterIP"]
    once = f"curl -fsS --max-time 5 http://{ip}/hostname"
    wait_for(lambda: c.run(c.roles.workers[0], once, check=False).returncode == 0,
             f"the Service {SERVICE} to answer on {ip} from {c.roles.workers[0]}", 60, 1)
    script = f"for i in $(seq {tries}); do {once}; echo; done"
    answered: set[str] = set()
    deadline = time.monotonic() + within_s
    while not pods <= answered and time.monotonic() < deadline:
        answered |= {line for line in c.run(c.roles.workers[0], script, timeout=120).stdout.split() if line}
    return answered


def dns_answers(c: ClusterStack) -> list[str]:
    """From inside a pod: agnhost's /dial resolves the Service's name through CoreDNS and calls it."""
    pod_ip = next(p["ip"] for p in echo_pods(c).values() if p["ip"])
    name = f"{SERVICE}.{NAMESPACE}.svc.{c.config.get('kubernetes', {}).get('clusterDomain', 'cluster.local')}"
    url = f"http://{pod_ip}:8080/dial?request=hostname&protocol=http&host={name}&port=80&tries=3"
    out = c.run(c.roles.workers[0], f"curl -fsS --max-time 60 {shlex.quote(url)}", timeout=90).stdout
    return list(json.loads(out).get("responses", []))


def metrics_nodes(c: ClusterStack) -> dict[str, str]:
    """`kubectl top nodes`: node -> CPU use; metrics-server scrapes every kubelet."""
    done = c.kubectl("top", "nodes", "--no-headers", check=False)
    return {line.split()[0]: line.split()[1] for line in done.stdout.splitlines() if line.strip()}


def wait_all_ready(c: ClusterStack, timeout: float) -> float:
    """Seconds until every node of the stack is Ready."""
    expected = set(c.roles.kube)

    def ready() -> bool:
        try:
            seen = nodes_ready(c)
        except Exception:  # the API can be briefly unreachable while the cluster heals
            return False
        return set(seen) >= expected and all(seen[n] for n in expected)

    return wait_for(ready, "every node Ready", timeout, interval=2)


def run_checklist(c: ClusterStack, image: str) -> dict[str, Any]:
    """Every item once, in order; the test Deployment is created on the way."""
    started = time.monotonic()
    result: dict[str, Any] = {"nodes_ready": nodes_ready(c), "kube_system_pods": kube_system_pods(c),
                              "etcd_health": etcd_health(c), "leases": leases(c),
                              "haproxy": haproxy_backends(c)}
    deploy_echo(c, image)
    result["echo_pods"] = echo_pods(c)
    result["service_answers"] = sorted(service_answers(c, set(result["echo_pods"])))
    result["dns_answers"] = dns_answers(c)
    result["metrics_nodes"] = metrics_nodes(c)
    result["seconds"] = round(time.monotonic() - started, 1)
    return result
