"""In-cluster add-ons as Kubernetes objects (one dict per object) for a pulumi-kubernetes program.

- CNI: Flannel (rendered here, pod CIDR and image repository filled in) or Calico (the Tigera
  operator's manifests from configurable URLs, then an `Installation` rendered here).
- CoreDNS: kubeadm deploys it; k8s-ha adds a PodDisruptionBudget (minAvailable 1) and patches
  kubeadm's Deployment: `kubernetes.corednsReplicas` replicas, at most one per node while nodes
  last (topologySpreadConstraints, maxSkew 1, never blocks scheduling) and spread across
  failure domains when possible.
- metrics-server (optional): two replicas spread over nodes, a PodDisruptionBudget, the image
  from the configured image repository.

`cluster_addons()` returns everything for a stack, split by how it must be applied:
`manifests` (remote URLs, applied first), `objects` (created and owned, server-side apply) and
`patches` (fields of objects kubeadm owns, applied as pulumi-kubernetes `*Patch` resources).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from k8s_ha.model.artifacts import (
    CALICO_TAG,
    FLANNEL_CNI_PLUGIN_TAG,
    FLANNEL_REPOSITORY,
    FLANNEL_TAG,
    METRICS_SERVER_TAG,
    pinned_ref,
)
from k8s_ha.model.spec import StackSpec
from k8s_ha.render.templating import render

KubeObject = dict[str, Any]

UPSTREAM_REGISTRY = "registry.k8s.io"


@dataclass(frozen=True)
class AddonSources:
    """Where add-on images and manifests come from. Defaults are upstream's; a firewalled or
    air-gapped site points these at its mirror (until the stack spec carries them, the
    Pulumi component fills them in; see docs/kubernetes.md)."""

    # The tags (and flannel's registry) have one home, k8s_ha/model/artifacts.py, so the images the
    # add-ons pull are the ones `bundle` exports and the offline registry serves.
    flannel_repository: str = FLANNEL_REPOSITORY
    flannel_version: str = FLANNEL_TAG
    flannel_cni_plugin_version: str = FLANNEL_CNI_PLUGIN_TAG
    calico_version: str = CALICO_TAG
    # Applied in this order; "{version}" is calico_version. Since Calico 3.30 the operator's
    # CRDs are a manifest of their own.
    calico_manifests: tuple[str, ...] = (
        "https://raw.githubusercontent.com/projectcalico/calico/{version}/manifests/operator-crds.yaml",
        "https://raw.githubusercontent.com/projectcalico/calico/{version}/manifests/tigera-operator.yaml",
    )
    # Installation.spec.registry, e.g. "harbor.example.com/quay/" (must end with "/"); None keeps
    # Calico's default registries (which Harbor's proxy cache already mirrors for containerd).
    calico_registry: str | None = None
    metrics_server_version: str = METRICS_SERVER_TAG
    # Overrides the image derived from mirrors.imageRepository.
    metrics_server_image: str | None = None
    # The kubelets' serving certificates are self-signed (kubeadm's default), so metrics-server
    # cannot verify them. See docs/kubernetes.md for the way out (serverTLSBootstrap).
    metrics_server_kubelet_insecure_tls: bool = True
    metrics_server_replicas: int = 2


@dataclass(frozen=True)
class Addons:
    manifests: list[str] = field(default_factory=list)
    objects: list[KubeObject] = field(default_factory=list)
    patches: list[KubeObject] = field(default_factory=list)


def _q(value: object) -> str:
    return json.dumps(str(value))


def _objects(template: str, **context: Any) -> list[KubeObject]:
    text = render(template, q=_q, **context)
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


# ---- CNI -----------------------------------------------------------------------------------------


def flannel_images(sources: AddonSources) -> tuple[str, str]:
    repo = sources.flannel_repository.rstrip("/")
    return (
        f"{repo}/flannel:{sources.flannel_version}",
        f"{repo}/flannel-cni-plugin:{sources.flannel_cni_plugin_version}",
    )


def flannel_objects(spec: StackSpec, sources: AddonSources = AddonSources()) -> list[KubeObject]:
    flannel, cni_plugin = (pinned_ref(ref, spec.artifacts) for ref in flannel_images(sources))
    cni_conf = {
        "name": "cbr0",
        "cniVersion": "0.3.1",
        "plugins": [
            {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    net_conf = {"Network": str(spec.kubernetes.pod_cidr), "EnableNFTables": False, "Backend": {"Type": "vxlan"}}
    return _objects(
        "kubernetes/addons/flannel.yaml.j2",
        flannel_image=flannel,
        cni_plugin_image=cni_plugin,
        cni_conf=json.dumps(cni_conf, indent=2) + "\n",
        net_conf=json.dumps(net_conf, indent=2) + "\n",
    )


def calico_manifests(sources: AddonSources = AddonSources()) -> list[str]:
    return [url.format(version=sources.calico_version) for url in sources.calico_manifests]


def calico_objects(spec: StackSpec, sources: AddonSources = AddonSources()) -> list[KubeObject]:
    """The operator's Installation: one IPv4 pool over the pod CIDR (VXLAN across subnets,
    routed natively within one), node addresses taken from the kubelet's --node-ip."""
    registry = sources.calico_registry
    if registry is not None and not registry.endswith("/"):
        registry += "/"  # the operator requires the trailing slash
    cidr = spec.kubernetes.pod_cidr
    return _objects(
        "kubernetes/addons/calico-installation.yaml.j2",
        registry=registry,
        pod_cidr=str(cidr),
        block_size=max(26, cidr.prefixlen),
    )


# ---- CoreDNS (kubeadm's) -------------------------------------------------------------------------


def coredns_objects(spec: StackSpec) -> list[KubeObject]:
    return _objects("kubernetes/addons/coredns.yaml.j2", part="objects", replicas=spec.kubernetes.coredns_replicas)


def coredns_patches(spec: StackSpec) -> list[KubeObject]:
    return _objects("kubernetes/addons/coredns.yaml.j2", part="patches", replicas=spec.kubernetes.coredns_replicas,
                    kubernetes_version=spec.versions.kubernetes)


# ---- metrics-server ------------------------------------------------------------------------------


def metrics_server_image(spec: StackSpec, sources: AddonSources = AddonSources()) -> str:
    """registry.k8s.io/metrics-server/metrics-server:<v> upstream; a mirror such as
    registry.aliyuncs.com/google_containers flattens the path (<repo>/metrics-server:<v>),
    the same rule kubeadm applies to CoreDNS."""
    if sources.metrics_server_image:
        return sources.metrics_server_image
    repo = spec.mirrors.image_repository
    if repo == UPSTREAM_REGISTRY:
        return f"{UPSTREAM_REGISTRY}/metrics-server/metrics-server:{sources.metrics_server_version}"
    return f"{repo}/metrics-server:{sources.metrics_server_version}"


def metrics_server_objects(spec: StackSpec, sources: AddonSources = AddonSources()) -> list[KubeObject]:
    args = [
        "--cert-dir=/tmp",
        "--secure-port=10250",
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
        "--kubelet-use-node-status-port",
        "--metric-resolution=15s",
    ]
    if sources.metrics_server_kubelet_insecure_tls:
        args.append("--kubelet-insecure-tls")
    return _objects(
        "kubernetes/addons/metrics-server.yaml.j2",
        image=pinned_ref(metrics_server_image(spec, sources), spec.artifacts),
        args=args,
        replicas=sources.metrics_server_replicas,
    )


# ---- everything for a stack ---------------------------------------------------------------------


def cluster_addons(spec: StackSpec, sources: AddonSources = AddonSources()) -> Addons:
    """The add-ons of a stack. Apply order: `manifests`, then `objects` (the CNI first: nodes
    stay NotReady and CoreDNS Pending until it runs), then `patches`."""
    if spec.kubernetes.cni == "flannel":
        manifests: list[str] = []
        objects = flannel_objects(spec, sources)
    else:
        manifests = calico_manifests(sources)
        objects = calico_objects(spec, sources)
    objects += coredns_objects(spec)
    if spec.kubernetes.metrics_server:
        objects += metrics_server_objects(spec, sources)
    return Addons(manifests=manifests, objects=objects, patches=coredns_patches(spec))
