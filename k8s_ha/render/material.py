"""Names of the generated secret and certificate material, and the CLI's placeholders for it.

Renderers look material up by name (`etcd/etcd1/server.key`); the Pulumi program resolves the same
names to pulumi-tls / pulumi-random outputs, the lab to certificates it generated itself, and the
CLI to visible placeholders. So every consumer agrees on what exists without sharing objects.
"""

from __future__ import annotations

from collections.abc import Mapping

Material = Mapping[str, str]

ETCD_CA = "etcd/ca.crt"
ETCD_HEALTHCHECK_CERT = "etcd/healthcheck-client.crt"
ETCD_HEALTHCHECK_KEY = "etcd/healthcheck-client.key"
APISERVER_ETCD_CERT = "etcd/apiserver-etcd-client.crt"
APISERVER_ETCD_KEY = "etcd/apiserver-etcd-client.key"
KUBERNETES_CA = "kubernetes/ca.crt"
KUBERNETES_CA_KEY = "kubernetes/ca.key"
FRONT_PROXY_CA = "kubernetes/front-proxy-ca.crt"
FRONT_PROXY_CA_KEY = "kubernetes/front-proxy-ca.key"
SERVICE_ACCOUNT_KEY = "kubernetes/sa.key"
SERVICE_ACCOUNT_PUB = "kubernetes/sa.pub"
BOOTSTRAP_TOKEN = "kubernetes/bootstrap-token"
CERTIFICATE_KEY = "kubernetes/certificate-key"
DISCOVERY_HASH = "kubernetes/discovery-ca-hash"
HAPROXY_STATS_PASSWORD = "loadbalancer/stats-password"
VRRP_PASSWORD = "loadbalancer/vrrp-password"
HARBOR_CERT = "harbor/tls.crt"
HARBOR_KEY = "harbor/tls.key"
HARBOR_ADMIN_PASSWORD = "harbor/admin-password"
HARBOR_DB_PASSWORD = "harbor/db-password"


def etcd_server_cert(node: str) -> str:
    return f"etcd/{node}/server.crt"


def etcd_server_key(node: str) -> str:
    return f"etcd/{node}/server.key"


def etcd_peer_cert(node: str) -> str:
    return f"etcd/{node}/peer.crt"


def etcd_peer_key(node: str) -> str:
    return f"etcd/{node}/peer.key"


def ssh_host_key(node: str) -> str:
    return f"ssh/{node}/host-ed25519.key"


def ssh_host_pub(node: str) -> str:
    return f"ssh/{node}/host-ed25519.pub"


def owner(name: str) -> str | None:
    """The node a piece of material belongs to (`ssh/<node>/...`, `etcd/<node>/...`), or None
    for cluster-wide material. A step only ever needs cluster-wide material and its own node's."""
    parts = name.split("/")
    return parts[1] if len(parts) == 3 else None


def is_secret(name: str) -> bool:
    """Private keys, passwords and tokens; certificates and public keys are not secret."""
    return name.endswith((".key", "-password", "-token")) or name == CERTIFICATE_KEY


class Placeholders(dict[str, str]):
    """What the CLI renders with: every name maps to a visible, obviously fake marker."""

    def __missing__(self, name: str) -> str:
        kind = "secret" if is_secret(name) else "generated"
        return f"<{kind}:{name}>"
