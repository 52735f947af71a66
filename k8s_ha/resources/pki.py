"""Every certificate, key, token and password of the cluster, made in the program.

Generating them here (pulumi-tls, pulumi-random) instead of on the nodes is what lets joins run
without scraping kubeadm's output (docs/architecture.md, rule 3): the CA exists before `kubeadm init`, the
discovery hash is computed from it here, and the bootstrap token and certificate key are known.
Outputs are keyed by the material names the renderers use (k8s_ha.render.material).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

import pulumi
import pulumi_random as random
import pulumi_tls as tls

from k8s_ha.model.spec import Role, StackSpec
from k8s_ha.placement.place import Placement
from k8s_ha.render import material as m

CA_USES = ["cert_signing", "crl_signing", "digital_signature", "key_encipherment"]
SERVER_USES = ["digital_signature", "key_encipherment", "server_auth"]
CLIENT_USES = ["digital_signature", "key_encipherment", "client_auth"]
PEER_USES = ["digital_signature", "key_encipherment", "server_auth", "client_auth"]


def discovery_hash(ca_public_key_pem: str) -> str:
    """kubeadm's --discovery-token-ca-cert-hash: sha256 over the CA's SubjectPublicKeyInfo DER,
    which is exactly the body of its PUBLIC KEY PEM."""
    body = "".join(line for line in ca_public_key_pem.strip().splitlines() if "-----" not in line)
    return "sha256:" + hashlib.sha256(base64.b64decode(body)).hexdigest()


class _Authority:
    def __init__(self, name: str, cn: str, spec: StackSpec, parent: pulumi.Resource) -> None:
        opts = pulumi.ResourceOptions(parent=parent)
        self.key = tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=opts)
        self.cert = tls.SelfSignedCert(
            f"{name}-cert",
            private_key_pem=self.key.private_key_pem,
            is_ca_certificate=True,
            allowed_uses=CA_USES,
            validity_period_hours=spec.pki.ca_validity_hours,
            subject=tls.SelfSignedCertSubjectArgs(common_name=cn, organization=f"k8s-ha {spec.cluster.name}"),
            opts=opts,
        )


class ClusterPki(pulumi.ComponentResource):
    """CAs (Kubernetes, front-proxy, etcd), leaf certificates, SSH host keys and generated secrets."""

    material: dict[str, pulumi.Output[str]]
    # Every certificate the program issues: name -> its notAfter (the stack's `certificates`).
    expiries: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, spec: StackSpec, placement: Placement,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("k8s-ha:pki:ClusterPki", name, None, opts)
        self._spec = spec
        self.material = {}
        self.expiries = {}
        self._authorities(spec)
        self._etcd_leaves(placement)
        self._cluster_clients()
        self._secrets(spec)
        self._ssh_host_keys(placement)
        if spec.harbor.enabled:
            self._harbor(spec, placement)
        self.register_outputs({})

    def _put(self, name: str, value: pulumi.Output[str]) -> None:
        self.material[name] = pulumi.Output.secret(value) if m.is_secret(name) else value

    def _authorities(self, spec: StackSpec) -> None:
        self.etcd_ca = _Authority("etcd-ca", "etcd-ca", spec, self)
        self.kubernetes_ca = _Authority("kubernetes-ca", "kubernetes", spec, self)
        self.front_proxy_ca = _Authority("front-proxy-ca", "front-proxy-ca", spec, self)
        for name, ca in (("etcd-ca", self.etcd_ca), ("kubernetes-ca", self.kubernetes_ca),
                         ("front-proxy-ca", self.front_proxy_ca)):
            self.expiries[name] = ca.cert.validity_end_time
        self._put(m.ETCD_CA, self.etcd_ca.cert.cert_pem)
        self._put(m.KUBERNETES_CA, self.kubernetes_ca.cert.cert_pem)
        self._put(m.KUBERNETES_CA_KEY, self.kubernetes_ca.key.private_key_pem)
        self._put(m.FRONT_PROXY_CA, self.front_proxy_ca.cert.cert_pem)
        self._put(m.FRONT_PROXY_CA_KEY, self.front_proxy_ca.key.private_key_pem)
        self._put(m.DISCOVERY_HASH, self.kubernetes_ca.key.public_key_pem.apply(discovery_hash))
        sa = tls.PrivateKey("service-account-key", algorithm="RSA", rsa_bits=2048,
                            opts=pulumi.ResourceOptions(parent=self))
        self._put(m.SERVICE_ACCOUNT_KEY, sa.private_key_pem)
        self._put(m.SERVICE_ACCOUNT_PUB, sa.public_key_pem)

    def leaf(
        self,
        name: str,
        ca: _Authority,
        cn: str,
        uses: Sequence[str],
        *,
        org: str | None = None,
        ips: Sequence[str] = (),
        dns: Sequence[str] = (),
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """A key and a certificate signed by `ca`; returns (certificate PEM, private key PEM)."""
        opts = pulumi.ResourceOptions(parent=self)
        key = tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=opts)
        request = tls.CertRequest(
            f"{name}-csr",
            private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=cn, organization=org),
            ip_addresses=list(ips),
            dns_names=list(dns),
            opts=opts,
        )
        cert = tls.LocallySignedCert(
            f"{name}-cert",
            cert_request_pem=request.cert_request_pem,
            ca_cert_pem=ca.cert.cert_pem,
            ca_private_key_pem=ca.key.private_key_pem,
            allowed_uses=list(uses),
            validity_period_hours=self._spec.pki.cert_validity_hours,
            early_renewal_hours=self._spec.pki.early_renewal_hours,
            opts=opts,
        )
        self.expiries[name] = cert.validity_end_time
        return cert.cert_pem, key.private_key_pem

    def _etcd_leaves(self, placement: Placement) -> None:
        for node in placement.by_role(Role.ETCD):
            ips, dns = [str(node.ip), "127.0.0.1"], [node.name, "localhost"]
            cert, key = self.leaf(f"etcd-{node.name}-server", self.etcd_ca, node.name, PEER_USES, ips=ips, dns=dns)
            self._put(m.etcd_server_cert(node.name), cert)
            self._put(m.etcd_server_key(node.name), key)
            cert, key = self.leaf(f"etcd-{node.name}-peer", self.etcd_ca, node.name, PEER_USES, ips=ips, dns=dns)
            self._put(m.etcd_peer_cert(node.name), cert)
            self._put(m.etcd_peer_key(node.name), key)
        cert, key = self.leaf("etcd-healthcheck-client", self.etcd_ca, "kube-etcd-healthcheck-client", CLIENT_USES)
        self._put(m.ETCD_HEALTHCHECK_CERT, cert)
        self._put(m.ETCD_HEALTHCHECK_KEY, key)
        cert, key = self.leaf("apiserver-etcd-client", self.etcd_ca, "kube-apiserver-etcd-client", CLIENT_USES)
        self._put(m.APISERVER_ETCD_CERT, cert)
        self._put(m.APISERVER_ETCD_KEY, key)

    def _cluster_clients(self) -> None:
        # kubeadm (1.29+) binds the group kubeadm:cluster-admins to cluster-admin; unlike
        # system:masters it can be revoked with RBAC.
        self.admin_cert, self.admin_key = self.leaf(
            "admin-client", self.kubernetes_ca, "k8s-ha-admin", CLIENT_USES, org="kubeadm:cluster-admins"
        )
        self.admin_key = pulumi.Output.secret(self.admin_key)

    def _secrets(self, spec: StackSpec) -> None:
        opts = pulumi.ResourceOptions(parent=self)
        # A RandomString's, RandomId's or RandomBytes' value is also its resource ID, which the state
        # keeps in clear: fine for the token's public ID half, not for its secret or the certificate
        # key. Only RandomPassword keeps its value secret and out of the ID (the engine tier greps).
        token_id = random.RandomString("bootstrap-token-id", length=6, special=False, upper=False, opts=opts)
        token_secret = random.RandomPassword("bootstrap-token-secret", length=16, special=False, upper=False,
                                             opts=opts)
        self._put(m.BOOTSTRAP_TOKEN, pulumi.Output.concat(token_id.result, ".", token_secret.result))
        # kubeadm's certificate key: 32 bytes as 64 hex digits, drawn uniformly from 0-9 and a-f.
        certificate_key = random.RandomPassword("certificate-key", length=64, upper=False, lower=False,
                                                numeric=True, special=True, override_special="abcdef", opts=opts)
        self._put(m.CERTIFICATE_KEY, certificate_key.result)
        stats = random.RandomPassword("haproxy-stats-password", length=24, special=False, opts=opts)
        self._put(m.HAPROXY_STATS_PASSWORD, stats.result)
        vrrp = random.RandomPassword("vrrp-password", length=8, special=False, opts=opts)
        self._put(m.VRRP_PASSWORD, vrrp.result)
        if spec.harbor.enabled:
            admin = random.RandomPassword("harbor-admin-password", length=24, special=False, opts=opts)
            db = random.RandomPassword("harbor-db-password", length=24, special=False, opts=opts)
            self._put(m.HARBOR_ADMIN_PASSWORD, admin.result)
            self._put(m.HARBOR_DB_PASSWORD, db.result)

    def _ssh_host_keys(self, placement: Placement) -> None:
        """VMs get a generated host key through cloud-init; existing hosts' keys are pinned in the stack."""
        for node in placement.nodes:
            if node.existing is not None:
                self._put(m.ssh_host_pub(node.name), pulumi.Output.from_input(node.existing.host_key))
                continue
            key = tls.PrivateKey(f"ssh-host-{node.name}", algorithm="ED25519",
                                 opts=pulumi.ResourceOptions(parent=self))
            self._put(m.ssh_host_key(node.name), key.private_key_openssh)
            self._put(m.ssh_host_pub(node.name), key.public_key_openssh.apply(str.strip))

    def _harbor(self, spec: StackSpec, placement: Placement) -> None:
        (node,) = placement.by_role(Role.HARBOR)
        if spec.harbor.certificate is not None:
            self._put(m.HARBOR_CERT, pulumi.Output.from_input(spec.harbor.certificate))
            self._put(m.HARBOR_KEY, pulumi.Output.secret(spec.harbor_tls_key or ""))
            return
        host = spec.harbor.hostname or node.name
        ips = [str(node.ip)] + ([str(spec.network.vip)] if spec.load_balancer.harbor_frontend else [])
        cert, key = self.leaf("harbor-server", self.kubernetes_ca, host, SERVER_USES, ips=ips,
                              dns=sorted({host, node.name}))
        self._put(m.HARBOR_CERT, cert)
        self._put(m.HARBOR_KEY, key)
