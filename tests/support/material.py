"""Real certificates, keys and passwords for the render and lab tiers, under the same names the
Pulumi program gives its pulumi-tls / pulumi-random outputs (k8s_ha.render.material).

The lab must run the real bootstrap with real TLS, but without the Pulumi engine; this module
stands in for pki.py there and nowhere else.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import secrets
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from k8s_ha.model.spec import Role, StackSpec
from k8s_ha.placement.place import Placement
from k8s_ha.render import material as m

KeyType = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _pem_key(key: KeyType) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


class Authority:
    def __init__(self, cn: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, True, False, False, True, True, False, False), critical=True
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self,
        cn: str,
        *,
        org: str | None = None,
        server: bool = False,
        client: bool = False,
        ips: Iterable[str] = (),
        dns: Iterable[str] = (),
    ) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, org))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        sans += [x509.DNSName(d) for d in dns]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return _pem_cert(builder.sign(self.key, hashes.SHA256())), _pem_key(key)

    @property
    def pem(self) -> str:
        return _pem_cert(self.cert)

    @property
    def key_pem(self) -> str:
        return _pem_key(self.key)


def discovery_hash(ca_pem: str) -> str:
    """kubeadm's --discovery-token-ca-cert-hash: sha256 of the CA's SubjectPublicKeyInfo."""
    cert = x509.load_pem_x509_certificate(ca_pem.encode())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def ssh_host_keypair() -> tuple[str, str]:
    """(OpenSSH private key, 'ssh-ed25519 AAAA...' public key)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    return private, public


def generate(spec: StackSpec, placement: Placement, *, ip_override: dict[str, str] | None = None) -> dict[str, str]:
    """Every material name the renderers use, with real values. `ip_override` maps node names to
    the addresses they really have (e.g. 127.0.0.x in the render tier)."""
    ips = {n.name: (ip_override or {}).get(n.name, str(n.ip)) for n in placement.nodes}
    out: dict[str, str] = {}
    etcd_ca, k8s_ca, proxy_ca = Authority("etcd-ca"), Authority("kubernetes"), Authority("front-proxy-ca")
    out[m.ETCD_CA] = etcd_ca.pem
    for node in placement.by_role(Role.ETCD):
        member_ips, member_dns = [ips[node.name], "127.0.0.1"], [node.name, "localhost"]
        out[m.etcd_server_cert(node.name)], out[m.etcd_server_key(node.name)] = etcd_ca.issue(
            node.name, server=True, client=True, ips=member_ips, dns=member_dns
        )
        out[m.etcd_peer_cert(node.name)], out[m.etcd_peer_key(node.name)] = etcd_ca.issue(
            node.name, server=True, client=True, ips=member_ips, dns=member_dns
        )
    out[m.ETCD_HEALTHCHECK_CERT], out[m.ETCD_HEALTHCHECK_KEY] = etcd_ca.issue(
        "kube-etcd-healthcheck-client", client=True
    )
    out[m.APISERVER_ETCD_CERT], out[m.APISERVER_ETCD_KEY] = etcd_ca.issue(
        "kube-apiserver-etcd-client", client=True
    )
    out[m.KUBERNETES_CA], out[m.KUBERNETES_CA_KEY] = k8s_ca.pem, k8s_ca.key_pem
    out[m.FRONT_PROXY_CA], out[m.FRONT_PROXY_CA_KEY] = proxy_ca.pem, proxy_ca.key_pem
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    out[m.SERVICE_ACCOUNT_KEY] = _pem_key(sa_key)
    out[m.SERVICE_ACCOUNT_PUB] = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    out[m.BOOTSTRAP_TOKEN] = f"{secrets.token_hex(3)}.{secrets.token_hex(8)}"
    out[m.CERTIFICATE_KEY] = secrets.token_hex(32)
    out[m.DISCOVERY_HASH] = discovery_hash(k8s_ca.pem)
    out[m.HAPROXY_STATS_PASSWORD] = secrets.token_urlsafe(18)
    out[m.VRRP_PASSWORD] = base64.b32encode(secrets.token_bytes(5)).decode().lower()
    for harbor in placement.by_role(Role.HARBOR):
        out[m.HARBOR_CERT], out[m.HARBOR_KEY] = k8s_ca.issue(
            harbor.name, server=True, ips=[ips[harbor.name], str(spec.network.vip)], dns=[harbor.name]
        )
    out[m.HARBOR_ADMIN_PASSWORD] = secrets.token_urlsafe(18)
    out[m.HARBOR_DB_PASSWORD] = secrets.token_urlsafe(18)
    for node in placement.nodes:
        out[m.ssh_host_key(node.name)], out[m.ssh_host_pub(node.name)] = ssh_host_keypair()
    out["_authorities"] = ""  # marker: generated by tests.support.material
    return out


def apiserver_standin_cert(ca_cert: str, ca_key: str, name: str, ip: str) -> tuple[str, str]:
    """A serving certificate for a kube-apiserver stand-in, signed by the cluster CA."""
    authority = Authority.__new__(Authority)
    authority.cert = x509.load_pem_x509_certificate(ca_cert.encode())
    loaded = serialization.load_pem_private_key(ca_key.encode(), password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    authority.key = loaded
    return authority.issue(name, server=True, ips=[ip], dns=[name])
