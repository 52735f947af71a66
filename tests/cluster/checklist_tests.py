"""The checklist's tests, shared by the cluster tiers (node containers, libvirt guests): a tier
module imports them, and they run on that module's `cluster` and `checklist` fixtures. Names come
from the stack's roles, so both topologies are checked alike."""

from __future__ import annotations

from typing import Any

from tests.cluster.cluster import ClusterSteps


def _lease_s(cluster: ClusterSteps) -> int:
    """The stack's leader-election lease (the product's default, 15 s, unless the stack sets one)."""
    return int(cluster.config.get("kubernetes", {}).get("failover", {}).get("leaderLeaseS", 15))


def test_the_exported_kubeconfig_reaches_the_api_through_the_vip(cluster: ClusterSteps) -> None:
    server = cluster.kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}").stdout
    assert server == f"https://{cluster.vip}:6443"
    assert "v1.36" in cluster.kubectl("version", "-o", "json").stdout


def test_every_node_is_ready(checklist: dict[str, Any], cluster: ClusterSteps) -> None:
    assert checklist["nodes_ready"] == {n: True for n in cluster.roles.kube}


def test_every_kube_system_pod_is_running(checklist: dict[str, Any], cluster: ClusterSteps) -> None:
    pods, masters = checklist["kube_system_pods"], cluster.roles.masters
    assert pods and all(state == "Running" for state in pods.values()), pods
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert {f"{component}-{cp}" for cp in masters} <= set(pods), pods
    assert sum(name.startswith("coredns-") for name in pods) == 2, pods
    assert sum(name.startswith("kube-proxy-") for name in pods) == len(cluster.roles.kube), pods
    assert any(name.startswith("metrics-server-") for name in pods), pods


def test_every_etcd_member_is_healthy(checklist: dict[str, Any], cluster: ClusterSteps) -> None:
    assert checklist["etcd_health"] == {n: True for n in cluster.roles.etcd}


def test_controller_manager_and_scheduler_leases_are_held(checklist: dict[str, Any], cluster: ClusterSteps) -> None:
    for lease, seen in checklist["leases"].items():
        assert seen["holder"] in cluster.roles.masters, (lease, seen)
        assert seen["renewed_s_ago"] < _lease_s(cluster), (lease, seen)


def test_haproxy_sees_every_apiserver_up(checklist: dict[str, Any], cluster: ClusterSteps) -> None:
    assert checklist["haproxy"] == {lb: {cp: "UP" for cp in cluster.roles.masters} for lb in cluster.roles.lbs}


def test_a_deployment_spread_across_the_workers_serves(checklist: dict[str, Any], cluster: ClusterSteps) -> None:
    pods = checklist["echo_pods"]
    assert {p["node"] for p in pods.values()} == set(cluster.roles.workers), pods
    assert set(checklist["service_answers"]) == set(pods), checklist["service_answers"]


def test_dns_resolves_a_service_name_from_a_pod(checklist: dict[str, Any]) -> None:
    answers = checklist["dns_answers"]
    assert answers and set(answers) <= set(checklist["echo_pods"]), answers


def test_metrics_server_reports_every_node(checklist: dict[str, Any], cluster: ClusterSteps) -> None:
    assert set(checklist["metrics_nodes"]) == set(cluster.roles.kube), checklist["metrics_nodes"]
