"""A strict, project-owned model of exactly the kubeadm configuration documents k8s-ha emits.

Why a model of our own: kubeadm's Go types accept far more than we write, and `kubeadm config
validate` (the authoritative check, run by k8s-init.sh / k8s-join.sh on the node before
init or join) needs the kubeadm binary. The render tier has no kubeadm, so it checks every
rendered document against these models instead: `extra="forbid"` everywhere, so a misspelt or
misplaced key, a field of an older apiVersion (v1beta3's `timeoutForControlPlane`), a map where a
list belongs (extraArgs) or a malformed token, hash, duration or address is an error.

Field names are the YAML keys (camelCase) on purpose: this file is a schema, and reads like the
kubeadm reference (kubeadm.k8s.io/v1beta4, kubelet.config.k8s.io/v1beta1). Every supported
Kubernetes minor (1.35 to 1.37) takes v1beta4; v1beta3 (1.29, 1.30) left with those releases.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

V1BETA4 = "kubeadm.k8s.io/v1beta4"
KUBELET_V1BETA1 = "kubelet.config.k8s.io/v1beta1"


class Strict(BaseModel):
    """Unknown keys are errors, no type coercion ("6443" is not a port)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _ip(value: str) -> str:
    ipaddress.ip_address(value)
    return value


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", host):
        ipaddress.ip_address(host)
    return value


def _https_endpoint(value: str) -> str:
    match = re.fullmatch(r"https://(.+)", value)
    if not match:
        raise ValueError(f"{value!r} is not an https:// endpoint")
    _host_port(match[1])
    return value


def _cidr(value: str) -> str:
    ipaddress.ip_network(value, strict=True)
    return value


IP = Annotated[str, AfterValidator(_ip)]
HostPort = Annotated[str, AfterValidator(_host_port)]
HttpsEndpoint = Annotated[str, AfterValidator(_https_endpoint)]
Cidr = Annotated[str, AfterValidator(_cidr)]
# Go's time.Duration text as kubeadm prints it ("24h0m0s", "4m0s").
Duration = Annotated[str, StringConstraints(pattern=r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")]
Token = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]{6}\.[a-z0-9]{16}$")]
CertificateKey = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
CaCertHash = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
Version = Annotated[str, StringConstraints(pattern=r"^v1\.[0-9]+\.[0-9]+$")]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")]
AbsPath = Annotated[str, StringConstraints(pattern=r"^/[^\s]*$")]
CriSocket = Literal["unix:///run/containerd/containerd.sock"]
FlagName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$")]


# ---- the documents' parts ---------------------------------------------------------------------


class BootstrapToken(Strict):
    token: Token
    description: str
    ttl: Duration
    usages: list[Literal["signing", "authentication"]] = Field(min_length=1)
    groups: list[Annotated[str, StringConstraints(pattern=r"^system:bootstrappers:[a-z0-9:-]+$")]]


class APIEndpoint(Strict):
    advertiseAddress: IP
    bindPort: int = Field(ge=1, le=65535)


class Networking(Strict):
    podSubnet: Cidr
    serviceSubnet: Cidr
    dnsDomain: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]


class ExternalEtcd(Strict):
    endpoints: list[HttpsEndpoint] = Field(min_length=1)
    caFile: AbsPath
    certFile: AbsPath
    keyFile: AbsPath


class Etcd(Strict):
    """Only external etcd: k8s-ha never lets kubeadm run a stacked etcd."""

    external: ExternalEtcd


class BootstrapTokenDiscovery(Strict):
    token: Token
    apiServerEndpoint: HostPort
    caCertHashes: list[CaCertHash] = Field(min_length=1)


class KubeletConfiguration(Strict):
    apiVersion: Literal["kubelet.config.k8s.io/v1beta1"]
    kind: Literal["KubeletConfiguration"]
    cgroupDriver: Literal["systemd"]
    failCgroupV1: Literal[False] | None = None  # kubernetes.allowCgroupV1
    nodeLeaseDurationSeconds: Annotated[int, Field(gt=0)]  # kubernetes.failover.nodeLeaseDurationS


class Conntrack(Strict):
    maxPerCore: Literal[0]


class KubeProxyConfiguration(Strict):
    """Only with kubernetes.systemContainerNodes: leave the machine's conntrack table size alone."""

    apiVersion: Literal["kubeproxy.config.k8s.io/v1alpha1"]
    kind: Literal["KubeProxyConfiguration"]
    conntrack: Conntrack


# ---- v1beta4 (Kubernetes >= 1.31): flag maps became lists of {name, value}; timeouts block ----


class Arg(Strict):
    name: FlagName
    value: str


class NodeRegistrationV1beta4(Strict):
    name: Name
    criSocket: CriSocket
    kubeletExtraArgs: list[Arg]
    ignorePreflightErrors: list[Literal["SystemVerification"]] = []


class ControlPlaneComponentV1beta4(Strict):
    extraArgs: list[Arg]


class APIServerV1beta4(Strict):
    certSANs: list[str] = Field(min_length=1)
    extraArgs: list[Arg] = []


class InitTimeoutsV1beta4(Strict):
    controlPlaneComponentHealthCheck: Duration
    kubeletHealthCheck: Duration
    kubernetesAPICall: Duration | None = None


class JoinTimeoutsV1beta4(Strict):
    controlPlaneComponentHealthCheck: Duration
    kubeletHealthCheck: Duration
    discovery: Duration
    tlsBootstrap: Duration
    kubernetesAPICall: Duration | None = None


class InitConfigurationV1beta4(Strict):
    apiVersion: Literal["kubeadm.k8s.io/v1beta4"]
    kind: Literal["InitConfiguration"]
    bootstrapTokens: list[BootstrapToken] = Field(min_length=1)
    certificateKey: CertificateKey
    localAPIEndpoint: APIEndpoint
    nodeRegistration: NodeRegistrationV1beta4
    timeouts: InitTimeoutsV1beta4


class ClusterConfigurationV1beta4(Strict):
    apiVersion: Literal["kubeadm.k8s.io/v1beta4"]
    kind: Literal["ClusterConfiguration"]
    clusterName: Name
    kubernetesVersion: Version
    controlPlaneEndpoint: HostPort
    imageRepository: str
    certificateValidityPeriod: Duration
    networking: Networking
    etcd: Etcd
    apiServer: APIServerV1beta4
    controllerManager: ControlPlaneComponentV1beta4
    scheduler: ControlPlaneComponentV1beta4


class DiscoveryV1beta4(Strict):
    bootstrapToken: BootstrapTokenDiscovery
    tlsBootstrapToken: Token


class JoinControlPlane(Strict):
    localAPIEndpoint: APIEndpoint
    certificateKey: CertificateKey


class JoinConfigurationV1beta4(Strict):
    apiVersion: Literal["kubeadm.k8s.io/v1beta4"]
    kind: Literal["JoinConfiguration"]
    discovery: DiscoveryV1beta4
    nodeRegistration: NodeRegistrationV1beta4
    controlPlane: JoinControlPlane | None = None
    timeouts: JoinTimeoutsV1beta4


MODELS: dict[tuple[str, str], type[Strict]] = {
    (V1BETA4, "InitConfiguration"): InitConfigurationV1beta4,
    (V1BETA4, "ClusterConfiguration"): ClusterConfigurationV1beta4,
    (V1BETA4, "JoinConfiguration"): JoinConfigurationV1beta4,
    (KUBELET_V1BETA1, "KubeletConfiguration"): KubeletConfiguration,
    ("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration"): KubeProxyConfiguration,
}

# What one kubeadm config file must hold, by the command it is for.
EXPECTED_KINDS = {
    "init": ("InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"),
    "join": ("JoinConfiguration",),
}
# ... and what may follow them (kubernetes.systemContainerNodes adds kube-proxy's settings to init).
OPTIONAL_KINDS: dict[str, tuple[str, ...]] = {"init": ("KubeProxyConfiguration",), "join": ()}


class KubeadmConfigError(ValueError):
    pass


def validate_document(document: Any) -> Strict:
    """One parsed YAML document -> its model instance; raises pydantic.ValidationError or
    KubeadmConfigError (not a mapping, or an apiVersion/kind we never emit)."""
    if not isinstance(document, dict):
        raise KubeadmConfigError(f"a kubeadm config document must be a mapping, got {type(document).__name__}")
    key = (str(document.get("apiVersion")), str(document.get("kind")))
    model = MODELS.get(key)
    if model is None:
        raise KubeadmConfigError(f"unexpected apiVersion/kind {key[0]}/{key[1]}")
    return model.model_validate(document)


def validate_config(text: str, *, api_version: str, command: Literal["init", "join"]) -> list[Strict]:
    """A whole kubeadm --config file: every document valid, kubeadm documents all of
    `api_version`, and exactly the kinds `command` needs, in order."""
    documents = [d for d in yaml.safe_load_all(text) if d is not None]
    models = [validate_document(d) for d in documents]
    kinds = tuple(d["kind"] for d in documents)
    if kinds not in (EXPECTED_KINDS[command], EXPECTED_KINDS[command] + OPTIONAL_KINDS[command]):
        raise KubeadmConfigError(f"{command} config holds {kinds}, expected {EXPECTED_KINDS[command]}")
    wrong = _wrong_versions(documents, api_version)
    if wrong:
        raise KubeadmConfigError(f"documents {wrong} are not {api_version}")
    return models


def _wrong_versions(documents: Iterable[dict[str, Any]], api_version: str) -> list[str]:
    return [
        d["kind"]
        for d in documents
        if str(d["apiVersion"]).startswith("kubeadm.k8s.io/") and d["apiVersion"] != api_version
    ]
