"""ClusterAddons: the CNI, CoreDNS hardening and optional metrics-server, applied with
pulumi-kubernetes through a provider built from the program's own admin kubeconfig.

Order: the provider waits for `kubeadm init`; remote manifests (Calico's operator) first, then
our objects (CNI, CoreDNS PodDisruptionBudget, metrics-server), then patches to objects kubeadm
owns (CoreDNS replicas and spreading), applied as `*Patch` resources so kubeadm keeps ownership.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from k8s_ha.model.spec import StackSpec
from k8s_ha.render.addons import KubeObject, cluster_addons

# kind -> the pulumi-kubernetes patch resource for it (server-side apply of a partial object).
PATCHES: dict[str, Any] = {
    "Deployment": k8s.apps.v1.DeploymentPatch,
    "ConfigMap": k8s.core.v1.ConfigMapPatch,
    "DaemonSet": k8s.apps.v1.DaemonSetPatch,
}


class ClusterAddons(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        spec: StackSpec,
        kubeconfig: pulumi.Output[str],
        prerequisites: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
        patches_after: Sequence[pulumi.Resource] = (),
    ) -> None:
        """`patches_after`: what the patches of kubeadm's own objects also wait for (the masters'
        upgrades: `kubeadm upgrade apply` rewrites CoreDNS, and the patch then applies again)."""
        super().__init__("k8s-ha:kubernetes:ClusterAddons", name, None, opts)
        addons = cluster_addons(spec)
        self.provider = k8s.Provider(
            "cluster", kubeconfig=kubeconfig, enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(prerequisites)),
        )
        on_cluster = pulumi.ResourceOptions(parent=self, provider=self.provider)
        previous: list[pulumi.Resource] = []
        for index, url in enumerate(addons.manifests):
            manifest = k8s.yaml.v2.ConfigFile(
                f"manifest-{index}", file=url,
                opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=previous)),
            )
            previous = [manifest]
        self.objects = k8s.yaml.v2.ConfigGroup(
            "objects", objs=addons.objects,
            opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=previous)),
        )
        self.patches = [self._patch(obj, on_cluster, patches_after) for obj in addons.patches]
        self.register_outputs({})

    def _patch(self, obj: KubeObject, opts: pulumi.ResourceOptions, after: Sequence[pulumi.Resource]
               ) -> pulumi.Resource:
        kind = obj["kind"]
        if kind not in PATCHES:
            raise ValueError(f"no patch resource for kind {kind}")
        meta = obj["metadata"]
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        patch: pulumi.Resource = PATCHES[kind](
            f"patch-{kind.lower()}-{meta.get('namespace', 'default')}-{meta['name']}",
            metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                name=meta["name"], namespace=meta.get("namespace"), annotations={
                    "pulumi.com/patchForce": "true",  # take over fields kubeadm set, keep the rest
                    **meta.get("annotations", {}),
                },
            ),
            **body,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[self.objects, *after])),
        )
        return patch

