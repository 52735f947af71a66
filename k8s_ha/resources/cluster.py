"""HaCluster: the layers in dependency order, and what the stack exports.

PKI and machines (+ readiness) -> load balancers, etcd members, Harbor and node preparation
(parallel) -> etcd health -> first master -> other masters, workers and add-ons (parallel) ->
worker membership (once the CNI runs). `kubernetes.bootstrap: false` leaves out node preparation
and every layer after etcd health. Every layer has a constant depth, so the critical path does not
grow with the number of nodes (a unit test holds it to that).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pulumi
import pulumi_tls as tls

from k8s_ha.model.certificates import expiry_warnings
from k8s_ha.model.spec import Role, StackSpec
from k8s_ha.placement.place import Placement
from k8s_ha.placement.plan import Plan
from k8s_ha.placement.report import fault_tolerance
from k8s_ha.render import material as m
from k8s_ha.render.etcd import etcd_settings
from k8s_ha.render.harbor import harbor_config
from k8s_ha.render.kubernetes import KubernetesConfig, kubernetes_config
from k8s_ha.render.loadbalancer import front_door
from k8s_ha.resources.addons import ClusterAddons
from k8s_ha.resources.control_plane import ControlPlane, ControlPlaneArgs
from k8s_ha.resources.etcd import ExternalEtcd, ExternalEtcdArgs, MemberTls
from k8s_ha.resources.harbor import HarborRegistry, HarborRegistryArgs
from k8s_ha.resources.loadbalancer import HaproxyKeepalivedPair, HaproxyKeepalivedPairArgs
from k8s_ha.resources.pki import ClusterPki
from k8s_ha.resources.remote import MaterialViews
from k8s_ha.resources.target import Target
from k8s_ha.resources.vm import ExistingHost, Host, Hypervisors, LibvirtVm
from k8s_ha.resources.workers import WorkerPool, WorkerPoolArgs


class HaCluster(pulumi.ComponentResource):
    hosts: dict[str, Host]

    def __init__(self, name: str, plan: Plan, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("k8s-ha:cluster:HaCluster", name, None, opts)
        spec, placement = plan.spec, plan.placement
        self.spec, self.placement = spec, placement
        self.pki = ClusterPki("pki", spec, placement, pulumi.ResourceOptions(parent=self))
        self.material = MaterialViews(self.pki.material)
        self._automation_key(spec)
        self.hosts = self._machines(spec, placement)
        first_lb, second_lb = self.targets_of(Role.LOAD_BALANCER)
        self.loadbalancer = HaproxyKeepalivedPair("loadbalancer", HaproxyKeepalivedPairArgs(
            hosts=(first_lb, second_lb),
            front_door=front_door(spec, placement),
            kubernetes_ca=self.pki.material[m.KUBERNETES_CA],
            stats_password=self.pki.material[m.HAPROXY_STATS_PASSWORD],
            vrrp_password=self.pki.material[m.VRRP_PASSWORD],
        ), pulumi.ResourceOptions(parent=self))
        self.etcd = ExternalEtcd("etcd", self._etcd_args(spec, placement), pulumi.ResourceOptions(parent=self))
        self.harbor: HarborRegistry | None = None
        if spec.harbor.enabled:
            (harbor_host,) = self.targets_of(Role.HARBOR)
            self.harbor = HarborRegistry("harbor", HarborRegistryArgs(
                host=harbor_host,
                config=harbor_config(spec, placement),
                tls_cert=self.pki.material[m.HARBOR_CERT],
                tls_key=self.pki.material[m.HARBOR_KEY],
                admin_password=self.pki.material[m.HARBOR_ADMIN_PASSWORD],
                db_password=self.pki.material[m.HARBOR_DB_PASSWORD],
            ), pulumi.ResourceOptions(parent=self))
        self.control_plane: ControlPlane | None = None
        self.addons: ClusterAddons | None = None
        self.worker_pools: list[WorkerPool] = []
        self.upgraded: pulumi.Resource | None = None
        if spec.kubernetes.bootstrap:
            self._kubernetes(spec)
        self.register_outputs({})

    def _kubernetes(self, spec: StackSpec) -> None:
        """kubeadm masters, add-ons and worker pools: the layer `kubernetes.bootstrap: false` leaves out."""
        # On a firewalled site kubeadm pulls its images through Harbor's proxy cache.
        harbor_ready = self.harbor.ready if self.harbor is not None else []
        kubernetes = kubernetes_config(spec, self.placement)
        control_plane = self.control_plane = ControlPlane("control-plane", self._control_plane_args(
            kubernetes, after=[self.etcd.health, *self.loadbalancer.steps.values(), *harbor_ready],
        ), pulumi.ResourceOptions(parent=self))
        # After an upgrade of the masters, kubeadm has rewritten CoreDNS: the add-ons' patches follow.
        addons = self.addons = ClusterAddons(
            "addons", spec, control_plane.kubeconfig, prerequisites=[control_plane.init],
            opts=pulumi.ResourceOptions(parent=self), patches_after=[control_plane.upgraded],
        )
        # A worker's Node only turns Ready once the CNI runs; its membership step waits for that.
        # The pools' upgrades follow one another, after the masters'.
        upgraded: pulumi.Resource = control_plane.upgraded
        for pool in spec.worker_pools:
            self.worker_pools.append(WorkerPool(
                f"workers-{pool.name}",
                self._worker_pool_args(kubernetes, control_plane, addons, pool.name, pool.labels, upgraded),
                pulumi.ResourceOptions(parent=self)))
            upgraded = self.worker_pools[-1].upgraded
        self.upgraded = upgraded

    def hosts_of(self, role: Role) -> list[Host]:
        return [self.hosts[n.name] for n in self.placement.by_role(role)]

    def targets_of(self, role: Role) -> list[Target]:
        return [host.target for host in self.hosts_of(role)]

    def _etcd_args(self, spec: StackSpec, placement: Placement) -> ExternalEtcdArgs:
        pki, members = self.pki.material, placement.by_role(Role.ETCD)
        return ExternalEtcdArgs(
            hosts=self.targets_of(Role.ETCD),
            settings=etcd_settings(spec),
            ca_cert=pki[m.ETCD_CA],
            member_tls={
                n.name: MemberTls(pki[m.etcd_server_cert(n.name)], pki[m.etcd_server_key(n.name)],
                                  pki[m.etcd_peer_cert(n.name)], pki[m.etcd_peer_key(n.name)])
                for n in members
            },
            healthcheck_cert=pki[m.ETCD_HEALTHCHECK_CERT],
            healthcheck_key=pki[m.ETCD_HEALTHCHECK_KEY],
            client_cert=pki[m.APISERVER_ETCD_CERT],
            client_key=pki[m.APISERVER_ETCD_KEY],
            disk_gib={n.name: n.size.disk_gib for n in members},
        )

    def _failure_domains(self, role: Role) -> dict[str, str]:
        return {n.name: n.failure_domain for n in self.placement.by_role(role)}

    def _registry_certificate(self, kubernetes: KubernetesConfig) -> pulumi.Output[str] | None:
        return self.pki.material[m.HARBOR_CERT] if kubernetes.registry is not None else None

    def _control_plane_args(self, kubernetes: KubernetesConfig, after: list[pulumi.Resource]) -> ControlPlaneArgs:
        pki = self.pki.material
        return ControlPlaneArgs(
            masters=self.targets_of(Role.CONTROL_PLANE),
            kubernetes=kubernetes,
            ca_cert=pki[m.KUBERNETES_CA],
            ca_key=pki[m.KUBERNETES_CA_KEY],
            front_proxy_ca_cert=pki[m.FRONT_PROXY_CA],
            front_proxy_ca_key=pki[m.FRONT_PROXY_CA_KEY],
            service_account_key=pki[m.SERVICE_ACCOUNT_KEY],
            service_account_pub=pki[m.SERVICE_ACCOUNT_PUB],
            bootstrap_token=pki[m.BOOTSTRAP_TOKEN],
            certificate_key=pki[m.CERTIFICATE_KEY],
            discovery_hash=pki[m.DISCOVERY_HASH],
            etcd_ca_cert=pki[m.ETCD_CA],
            etcd_client_cert=pki[m.APISERVER_ETCD_CERT],
            etcd_client_key=pki[m.APISERVER_ETCD_KEY],
            admin_cert=self.pki.admin_cert,
            admin_key=self.pki.admin_key,
            registry_certificate=self._registry_certificate(kubernetes),
            failure_domains=self._failure_domains(Role.CONTROL_PLANE),
            workers=[n.name for n in self.placement.by_role(Role.WORKER)],
            after=after,
            etcd_restored=self.etcd.restored,
            etcd_snapshot_sha256=self.spec.etcd.restore.sha256 if self.spec.etcd.restore else None,
        )

    def _worker_pool_args(self, kubernetes: KubernetesConfig, control_plane: ControlPlane, addons: ClusterAddons,
                          pool: str, labels: dict[str, str], upgrade_after: pulumi.Resource) -> WorkerPoolArgs:
        workers = [n for n in self.placement.by_role(Role.WORKER) if n.pool == pool]
        return WorkerPoolArgs(
            workers=[self.hosts[n.name].target for n in workers],
            kubernetes=kubernetes,
            pool=pool,
            bootstrap_token=self.pki.material[m.BOOTSTRAP_TOKEN],
            discovery_hash=self.pki.material[m.DISCOVERY_HASH],
            control_plane=control_plane,
            labels=labels,
            failure_domains={n.name: n.failure_domain for n in workers},
            registry_certificate=self._registry_certificate(kubernetes),
            cni=[addons.objects],
            upgrade_after=[upgrade_after],
        )

    def _automation_key(self, spec: StackSpec) -> None:
        """The key the program logs in with: the stack's secret, or one generated and authorised on
        every VM (existing hosts must authorise `automationPublicKey` themselves)."""
        if spec.ssh_private_key is not None:
            self.private_key: pulumi.Output[str] = pulumi.Output.secret(spec.ssh_private_key)
            self.public_key: pulumi.Output[str] | None = None
            return
        key = tls.PrivateKey("automation-ssh-key", algorithm="ED25519", opts=pulumi.ResourceOptions(parent=self))
        self.private_key = pulumi.Output.secret(key.private_key_openssh)
        self.public_key = key.public_key_openssh.apply(str.strip)

    def _machines(self, spec: StackSpec, placement: Placement) -> dict[str, Host]:
        used = {n.hypervisor for n in placement.nodes if n.hypervisor is not None}
        hypervisors = Hypervisors(spec, used, self)
        hosts: dict[str, Host] = {}
        for node in placement.nodes:
            opts = pulumi.ResourceOptions(parent=self)
            if node.existing is not None:
                hosts[node.name] = ExistingHost(node, spec, self.material, self.private_key, opts)
            else:
                hosts[node.name] = LibvirtVm(node, spec, hypervisors, self.material, self.private_key,
                                             self.public_key, opts)
        return hosts

    def certificates(self) -> pulumi.Output[dict[str, str]]:
        """Every certificate's notAfter: the program's (pulumi-tls) and each master's (its k8s-certs
        step); the ones inside the renewal window are logged as warnings, so `pulumi preview` and
        `up` show them."""
        program = pulumi.Output.all(**self.pki.expiries)
        masters = (self.control_plane.certificate_expiries if self.control_plane is not None
                   else pulumi.Output.from_input({}))
        window = self.spec.pki.early_renewal_hours

        def merged(parts: list[dict[str, str]]) -> dict[str, str]:
            expiries = {**parts[0], **parts[1]}
            for line in expiry_warnings(expiries, window, dt.datetime.now(dt.UTC)):
                pulumi.log.warn(line, self)
            return dict(sorted(expiries.items()))

        return pulumi.Output.all(program, masters).apply(merged)

    def exports(self) -> dict[str, Any]:
        nodes = [
            {"name": n.name, "role": n.role.value, "pool": n.pool, "hypervisor": n.hypervisor,
             "ip": str(n.ip), "source": "vm" if n.is_vm else "existing"}
            for n in self.placement.nodes
        ]
        connections = pulumi.Output.secret({
            name: {"host": h.access.address, "port": h.access.port, "user": h.access.user,
                   "hostKey": h.access.host_key}
            for name, h in self.hosts.items()
        })
        out: dict[str, Any] = {
            "vip": self.loadbalancer.vip,
            "apiserverUrl": self.loadbalancer.endpoint,
            "etcdEndpoints": self.etcd.endpoints,
            "etcdClient": pulumi.Output.secret(self.etcd.client),
            "nodes": nodes,
            "connections": connections,
            "faultTolerance": fault_tolerance(self.placement),
            "automationPrivateKey": self.private_key,
        }
        out["certificates"] = self.certificates()
        if self.control_plane is not None:
            out["kubeconfig"] = self.control_plane.kubeconfig
        if self.upgraded is not None:
            # What the cluster runs once the whole upgrade chain is done: the next `up` checks a
            # change of versions.kubernetes against it.
            version = self.spec.versions.kubernetes
            out["kubernetesVersion"] = pulumi.Output.from_input(self.upgraded.urn).apply(lambda _: version)
        if self.public_key is not None:
            out["automationPublicKey"] = self.public_key
        if self.harbor is not None:
            out.update(self.harbor.exports())
        return out
