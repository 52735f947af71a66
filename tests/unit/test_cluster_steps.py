"""The cluster tier's own logic, without guests: which recorded resources it applies as add-ons, in
what order relative to the kubeadm steps, and the objects it sends (what pulumi-kubernetes would)."""

from __future__ import annotations

import functools
from pathlib import Path

from tests.cluster.cluster import addon_objects, is_addon, layer_of
from tests.cluster.config import stack_config
from tests.unit.harness import Graph, run_program

PIN = "0" * 64
CHECKSUMS = {"kubeadm": {"1.36.4": PIN}, "kubelet": {"1.36.4": PIN}, "kubectl": {"1.36.4": PIN},
             "containerd": {"2.3.4": PIN}, "runc": {"1.4.3": PIN}, "cni-plugins": {"1.9.1": PIN},
             "crictl": {"1.37.0": PIN}, "etcd": {"3.6.14": PIN}}


@functools.cache
def _graph() -> Graph:
    config = stack_config({"hv-a": "qemu:///system", "hv-b": "qemu:///system"}, "10.212.0.1",
                          Path("/nonexistent/base.qcow2"), "qemu", {"checksums": CHECKSUMS})
    return run_program(config)


def test_the_addons_wait_for_init_through_their_provider_and_memberships_wait_for_them() -> None:
    graph = _graph()
    addons = [r for r in graph.resources.values() if is_addon(r)]
    assert {r.type for r in addons} == {"kubernetes:yaml/v2:ConfigGroup", "kubernetes:apps/v1:DeploymentPatch"}
    objects = graph.named("objects")
    assert graph.depends_on(objects, graph.named("cp1-k8s-init"))  # only through the provider
    assert not objects.dependencies
    for worker in ("worker1", "worker2"):
        assert graph.depends_on(graph.named(f"{worker}-k8s-membership"), objects)
    assert graph.depends_on(graph.named("patch-deployment-kube-system-coredns"), objects)


def test_addon_objects_are_what_server_side_apply_needs() -> None:
    graph = _graph()
    (patch,) = addon_objects(graph.named("patch-deployment-kube-system-coredns"))
    assert (patch["apiVersion"], patch["kind"]) == ("apps/v1", "Deployment")
    assert patch["metadata"]["name"] == "coredns" and patch["metadata"]["namespace"] == "kube-system"
    assert patch["spec"]["replicas"] == 2 and isinstance(patch["spec"]["replicas"], int)  # not 2.0
    kinds = {(o["kind"], o["metadata"]["name"]) for o in addon_objects(graph.named("objects"))}
    assert {("DaemonSet", "kube-flannel-ds"), ("Deployment", "metrics-server")} <= kinds


def test_every_recorded_step_has_a_layer() -> None:
    names = [r.name for r in _graph().of_type("command:remote:Command")]
    assert {n: layer_of(n) for n in names if layer_of(n) == "other"} == {}
    assert layer_of("cp1-k8s-init") == "kubeadm init" and layer_of("worker2-k8s-join") == "kubeadm join"
