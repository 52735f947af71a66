"""ExternalEtcd on its own: a 3-member TLS etcd cluster on three machines that already exist.

A complete Pulumi program (docs/library.md). Stack config:
  hosts:          {name: address} of the three machines (Debian/Ubuntu, reachable over SSH as root)
  hostKeys:       {name: "ssh-ed25519 AAAA..."}, each machine's SSH host key (pinned, no TOFU)
  sshPrivateKey:  the automation key (secret)
"""

import pulumi
import pulumi_tls as tls

from k8s_ha.render.etcd import EtcdSettings
from k8s_ha.resources.etcd import ExternalEtcd, ExternalEtcdArgs, MemberTls
from k8s_ha.resources.target import Target

config = pulumi.Config()
hosts: dict[str, str] = config.require_object("hosts")
host_keys: dict[str, str] = config.require_object("hostKeys")
ssh_key = config.require_secret("sshPrivateKey")

ca_key = tls.PrivateKey("etcd-ca-key", algorithm="ECDSA", ecdsa_curve="P256")
ca = tls.SelfSignedCert(
    "etcd-ca", private_key_pem=ca_key.private_key_pem, is_ca_certificate=True, validity_period_hours=87600,
    allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
    subject=tls.SelfSignedCertSubjectArgs(common_name="etcd-ca"),
)


def leaf(name: str, common_name: str, ips: list[str], uses: list[str]) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
    """A certificate signed by the etcd CA, and its private key."""
    key = tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P256")
    request = tls.CertRequest(f"{name}-csr", private_key_pem=key.private_key_pem, ip_addresses=ips,
                              dns_names=[common_name], subject=tls.CertRequestSubjectArgs(common_name=common_name))
    cert = tls.LocallySignedCert(name, cert_request_pem=request.cert_request_pem, ca_cert_pem=ca.cert_pem,
                                 ca_private_key_pem=ca_key.private_key_pem, validity_period_hours=8760,
                                 allowed_uses=uses)
    return cert.cert_pem, key.private_key_pem


member_tls = {}
for name, ip in hosts.items():
    uses = ["digital_signature", "key_encipherment", "server_auth", "client_auth"]
    server_cert, server_key = leaf(f"{name}-server", name, [ip, "127.0.0.1"], uses)
    peer_cert, peer_key = leaf(f"{name}-peer", name, [ip], uses)
    member_tls[name] = MemberTls(server_cert, server_key, peer_cert, peer_key)
client_cert, client_key = leaf("healthcheck-client", "etcd-healthcheck", [], ["digital_signature", "client_auth"])

etcd = ExternalEtcd("etcd", ExternalEtcdArgs(
    hosts=[Target.ssh(name, ip, host_key=host_keys[name], private_key=ssh_key) for name, ip in hosts.items()],
    settings=EtcdSettings(version="3.6.14", cluster="payments"),  # the upstream release, sha256-pinned
    ca_cert=ca.cert_pem,
    member_tls=member_tls,
    healthcheck_cert=client_cert,
    healthcheck_key=client_key,
))
pulumi.export("endpoints", etcd.endpoints)
pulumi.export("client", pulumi.Output.secret(etcd.client))
