"""Typed model of one stack's configuration, and every rule that makes a stack valid.

The model mirrors the stack file: each top-level field is one `k8s-ha:<key>` config entry, so an
error path such as `etcd.nodes[3].ip` points straight at the line to fix. Field-level rules live
on the models; rules that compare fields live in `_cross_checks` so that all of them run and every
problem is reported at once.
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from collections.abc import Iterator
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from components.errors import Problem, SpecError

PROJECT = "k8s-ha"

# Config keys whose values must be Pulumi secrets (`pulumi config set --secret`).
SECRET_KEYS = frozenset({"sshPrivateKey", "harborTlsKey"})

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LIBVIRT_URI = re.compile(
    r"^(qemu|test)(\+(ssh|tcp|tls|unix|libssh|libssh2))?://([^/?#\s]*)/(system|session|default)"
    r"(\?[^\s#]*)?$"
)
HTTP_URL = re.compile(r"^(https?|file)://[^\s]+$")
SSH_PUBLIC_KEY = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) "
    r"[A-Za-z0-9+/=]+( .*)?$"
)
SHA256 = re.compile(r"^[0-9a-f]{64}$")

SUPPORTED_KUBERNETES_MINORS = (29, 30, 31, 32, 33, 34)
SUPPORTED_ETCD_MINORS = ((3, 4), (3, 5), (3, 6))
SUPPORTED_CONTAINERD_MAJORS = (1, 2)


class Role(str, Enum):
    """What a node does; the order is the order in which layers come up."""

    LOAD_BALANCER = "loadBalancer"
    ETCD = "etcd"
    CONTROL_PLANE = "controlPlane"
    WORKER = "worker"
    HARBOR = "harbor"


class Size(BaseModel):
    vcpu: int
    memory_mib: int
    disk_gib: int


# Recommended sizes from the seeds (seed 000: LB 4 vCPU/4 GB, etcd 4/8 GB, master 4/8 GB) and
# the hard minimums below which the software itself refuses or falls over (kubeadm preflight
# wants 2 CPUs and 1700 MB on a control-plane node; Harbor's installer wants 2 CPUs and 4 GB).
DEFAULT_SIZE: dict[Role, Size] = {
    Role.LOAD_BALANCER: Size(vcpu=4, memory_mib=4096, disk_gib=20),
    Role.ETCD: Size(vcpu=4, memory_mib=8192, disk_gib=40),
    Role.CONTROL_PLANE: Size(vcpu=4, memory_mib=8192, disk_gib=50),
    Role.WORKER: Size(vcpu=4, memory_mib=8192, disk_gib=100),
    Role.HARBOR: Size(vcpu=4, memory_mib=8192, disk_gib=40),
}
MINIMUM_SIZE: dict[Role, Size] = {
    Role.LOAD_BALANCER: Size(vcpu=1, memory_mib=512, disk_gib=8),
    Role.ETCD: Size(vcpu=1, memory_mib=1024, disk_gib=10),
    Role.CONTROL_PLANE: Size(vcpu=2, memory_mib=1700, disk_gib=20),
    Role.WORKER: Size(vcpu=1, memory_mib=1024, disk_gib=20),
    Role.HARBOR: Size(vcpu=2, memory_mib=4096, disk_gib=40),
}


class Model(BaseModel):
    """Base: camelCase keys as in the stack file, unknown keys are errors, values are frozen."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


def _dns_label(value: str) -> str:
    if not DNS_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 label (lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters)"
        )
    return value


def _url(value: str) -> str:
    if not HTTP_URL.match(value):
        raise ValueError(f"{value!r} is not an http(s):// or file:// URL")
    return value


def _image_source(value: str) -> str:
    if value.startswith("/") or HTTP_URL.match(value):
        return value
    raise ValueError(f"{value!r} is neither an absolute path nor an http(s)/file URL")


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
Url = Annotated[str, AfterValidator(_url)]
ImageSource = Annotated[str, AfterValidator(_image_source)]


class ExistingHost(Model):
    """A machine made elsewhere: no VM is created, the program only connects to it.

    Its SSH host key cannot be injected, so the user pins it here (no trust on first use).
    """

    host_key: str
    address: str | None = None
    user: str | None = None
    failure_domain: str | None = None

    @field_validator("host_key")
    @classmethod
    def _host_key(cls, value: str) -> str:
        if not SSH_PUBLIC_KEY.match(value.strip()):
            raise ValueError("must be an SSH public host key such as 'ssh-ed25519 AAAA...'")
        return value.strip()


class NodeSpec(Model):
    name: DnsLabel
    ip: ipaddress.IPv4Address
    hypervisor: str | None = None
    vcpu: int | None = Field(default=None, ge=1, le=256)
    memory_mib: int | None = Field(default=None, ge=128)
    disk_gib: int | None = Field(default=None, ge=1)
    existing: ExistingHost | None = None


    @model_validator(mode="after")
    def _existing_has_no_vm_fields(self) -> NodeSpec:
        if self.existing is not None and self.hypervisor is not None:
            raise ValueError("an existing host is not placed on a hypervisor: drop 'hypervisor'")
        return self


class BridgeAttachment(Model):
    bridge: str | None = None
    network: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> BridgeAttachment:
        if (self.bridge is None) == (self.network is None):
            raise ValueError("set exactly one of 'bridge' (a host bridge) or 'network' (a libvirt network)")
        return self


class Hypervisor(Model):
    name: DnsLabel
    uri: str
    pool: str = "default"
    attach: BridgeAttachment = BridgeAttachment(bridge="br0")
    domain_type: Literal["kvm", "qemu"] = "kvm"
    base_image: str | None = None


    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        if not LIBVIRT_URI.match(value):
            raise ValueError(
                f"{value!r} is not a libvirt URI such as qemu:///system or "
                "qemu+ssh://root@hv1/system"
            )
        return value


class ImageSettings(Model):
    """The cloud image every VM's root disk is cloned from (needs cloud-init and sshd)."""

    source: ImageSource = (
        "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
    )
    format: Literal["qcow2", "raw"] = "qcow2"


class NodeNetwork(Model):
    cidr: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    dns: list[ipaddress.IPv4Address] = Field(min_length=1)
    vip: ipaddress.IPv4Address
    interface: str = "eth0"
    search_domains: list[str] = []

    @field_validator("cidr", mode="before")
    @classmethod
    def _strict_cidr(cls, value: Any) -> Any:
        try:
            ipaddress.IPv4Network(str(value), strict=True)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a network address with prefix ({exc})") from exc
        return value

    @field_validator("interface")
    @classmethod
    def _ifname(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", value):
            raise ValueError(f"{value!r} is not a Linux interface name")
        return value


class HaproxySettings(Model):
    """Health-check timings: a dead apiserver leaves the pool after inter*fall (~3 s by default)."""

    check_interval_ms: int = Field(default=1000, ge=100, le=60000)
    fall: int = Field(default=3, ge=1, le=10)
    rise: int = Field(default=2, ge=1, le=10)
    connect_timeout_ms: int = Field(default=3000, ge=100)
    client_timeout_s: int = Field(default=3600, ge=1)
    stats_port: int = Field(default=8404, ge=1, le=65535)


class IngressFrontend(Model):
    enabled: bool = False
    http_node_port: int = Field(default=30080, ge=30000, le=32767)
    https_node_port: int = Field(default=30443, ge=30000, le=32767)


class LoadBalancerSpec(Model):
    nodes: list[NodeSpec]
    virtual_router_id: int | None = Field(default=None, ge=1, le=255)
    nopreempt: bool = False
    advert_interval_ms: int = Field(default=1000, ge=10, le=40950)
    haproxy: HaproxySettings = HaproxySettings()
    harbor_frontend: bool = False
    ingress: IngressFrontend = IngressFrontend()

    @field_validator("nodes")
    @classmethod
    def _two(cls, nodes: list[NodeSpec]) -> list[NodeSpec]:
        if len(nodes) != 2:
            raise ValueError(
                f"needs exactly 2 load-balancer nodes (a keepalived MASTER and BACKUP), got {len(nodes)}"
            )
        return nodes

    @field_validator("advert_interval_ms")
    @classmethod
    def _centiseconds(cls, value: int) -> int:
        if value % 10:
            raise ValueError("VRRPv3 adverts are in centiseconds: use a multiple of 10 ms")
        return value


class EtcdSource(Model):
    """Where etcd comes from: the distribution package, or a release tarball with its checksum."""

    kind: Literal["package", "tarball"] = "package"
    url: str | None = None
    sha256: str | None = None

    @model_validator(mode="after")
    def _tarball_needs_url_and_checksum(self) -> EtcdSource:
        if self.kind == "tarball":
            missing = [k for k in ("url", "sha256") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"a tarball source needs {' and '.join(missing)}")
        if self.url is not None:
            _url(self.url)
        if self.sha256 is not None and not SHA256.match(self.sha256):
            raise ValueError("sha256 must be 64 lowercase hex digits")
        return self


class EtcdBackup(Model):
    on_calendar: str = "hourly"
    retain: int = Field(default=24, ge=1, le=10000)
    directory: str = "/var/backups/etcd"


class EtcdSpec(Model):
    nodes: list[NodeSpec]
    heartbeat_interval_ms: int = Field(default=100, ge=10, le=10000)
    election_timeout_ms: int = Field(default=1000, ge=50, le=50000)
    source: EtcdSource = EtcdSource()
    backup: EtcdBackup = EtcdBackup()

    @field_validator("nodes")
    @classmethod
    def _odd_member_count(cls, nodes: list[NodeSpec]) -> list[NodeSpec]:
        count = len(nodes)
        if count not in (3, 5, 7):
            raise ValueError(
                f"{count} members: use 3, 5 or 7. etcd needs a majority (n/2+1) alive: "
                f"{_quorum_line(count)}; an even count tolerates no more failures than the odd "
                "count below it, and fewer than 3 tolerates none"
            )
        return nodes

    @model_validator(mode="after")
    def _election_vs_heartbeat(self) -> EtcdSpec:
        if self.election_timeout_ms < 5 * self.heartbeat_interval_ms:
            raise ValueError(
                "electionTimeoutMs should be at least 5x heartbeatIntervalMs (etcd tuning guide)"
            )
        return self


def quorum(members: int) -> int:
    return members // 2 + 1


def _quorum_line(count: int) -> str:
    if count <= 0:
        return "no members at all"
    return f"{count} members need {quorum(count)} alive and tolerate {count - quorum(count)} failure(s)"


class ControlPlaneSpec(Model):
    nodes: list[NodeSpec]

    @field_validator("nodes")
    @classmethod
    def _at_least_two(cls, nodes: list[NodeSpec]) -> list[NodeSpec]:
        if len(nodes) < 2:
            raise ValueError(
                f"needs at least 2 control-plane nodes for HA (3 recommended), got {len(nodes)}"
            )
        return nodes


class WorkerPool(Model):
    """Either `count` nodes numbered from `firstIp`, or an explicit `nodes` list."""

    name: DnsLabel
    count: int | None = Field(default=None, ge=0, le=5000)
    first_ip: ipaddress.IPv4Address | None = None
    nodes: list[NodeSpec] | None = None
    vcpu: int | None = Field(default=None, ge=1, le=256)
    memory_mib: int | None = Field(default=None, ge=128)
    disk_gib: int | None = Field(default=None, ge=1)
    hypervisors: list[str] | None = None
    labels: dict[str, str] = {}


    @model_validator(mode="after")
    def _count_or_nodes(self) -> WorkerPool:
        if (self.count is None) == (self.nodes is None):
            raise ValueError("set either 'count' (with 'firstIp') or 'nodes'")
        if self.count is not None and self.first_ip is None:
            raise ValueError("'count' needs 'firstIp', the address of the first node")
        return self

    def expanded_nodes(self) -> list[NodeSpec]:
        """The pool's nodes; counted pools get names `<pool>-<n>` and consecutive IPs."""
        if self.nodes is not None:
            return self.nodes
        assert self.count is not None and self.first_ip is not None
        first = int(self.first_ip)
        return [
            NodeSpec(name=f"{self.name}-{i + 1}", ip=ipaddress.IPv4Address(first + i))
            for i in range(self.count)
        ]


class HarborSpec(Model):
    enabled: bool = False
    node: NodeSpec | None = None
    data_disk_gib: int = Field(default=200, ge=20)
    proxy_cache: bool = True
    hostname: str | None = None
    certificate: str | None = None

    @model_validator(mode="after")
    def _enabled_needs_node(self) -> HarborSpec:
        if self.enabled and self.node is None:
            raise ValueError("enabled Harbor needs 'node'")
        return self


class Versions(Model):
    kubernetes: str = "1.32.4"
    etcd: str = "3.5.17"
    containerd: str = "1.7.24"
    harbor: str = "2.12.2"

    @field_validator("kubernetes")
    @classmethod
    def _kubernetes(cls, value: str) -> str:
        major, minor = _semver(value)[:2]
        if major != 1 or minor not in SUPPORTED_KUBERNETES_MINORS:
            lo, hi = SUPPORTED_KUBERNETES_MINORS[0], SUPPORTED_KUBERNETES_MINORS[-1]
            raise ValueError(f"Kubernetes {value} is not supported (1.{lo} to 1.{hi})")
        return value

    @field_validator("etcd")
    @classmethod
    def _etcd(cls, value: str) -> str:
        if _semver(value)[:2] not in SUPPORTED_ETCD_MINORS:
            raise ValueError(f"etcd {value} is not supported (3.4, 3.5 or 3.6)")
        return value

    @field_validator("containerd")
    @classmethod
    def _containerd(cls, value: str) -> str:
        if _semver(value)[0] not in SUPPORTED_CONTAINERD_MAJORS:
            raise ValueError(f"containerd {value} is not supported (1.x or 2.x)")
        return value

    @field_validator("harbor")
    @classmethod
    def _harbor(cls, value: str) -> str:
        if _semver(value)[0] != 2:
            raise ValueError(f"Harbor {value} is not supported (2.x)")
        return value

    @property
    def kubernetes_minor(self) -> int:
        return _semver(self.kubernetes)[1]


def _semver(value: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", value)
    if not match:
        raise ValueError(f"{value!r} is not a version such as 1.32.4")
    return int(match[1]), int(match[2]), int(match[3])


class KubernetesSettings(Model):
    pod_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.244.0.0/16")
    service_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.96.0.0/12")
    cni: Literal["calico", "flannel"] = "calico"
    cluster_domain: str = "cluster.local"
    metrics_server: bool = False
    coredns_replicas: int = Field(default=2, ge=2, le=10)


class Mirrors(Model):
    """Every download location, so firewalled and air-gapped sites can point at their mirrors."""

    image_repository: str = "registry.k8s.io"
    os_packages: Url = "http://mirror.example/debian"
    kubernetes_packages: Url = "https://pkgs.k8s.io/core:/stable:/v{minor}/deb/"
    etcd_release: Url = (
        "https://github.com/etcd-io/etcd/releases/download/v{version}/etcd-v{version}-linux-amd64.tar.gz"
    )
    harbor_installer: Url = (
        "https://github.com/goharbor/harbor/releases/download/v{version}/"
        "harbor-offline-installer-v{version}.tgz"
    )
    harbor_installer_sha256: str | None = None

    @field_validator("image_repository")
    @classmethod
    def _repo(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)*", value):
            raise ValueError(f"{value!r} is not an image repository such as registry.k8s.io")
        return value


class SshSettings(Model):
    user: str = "k8s"
    port: int = Field(default=22, ge=1, le=65535)
    authorized_keys: list[str] = []

    @field_validator("authorized_keys")
    @classmethod
    def _keys(cls, keys: list[str]) -> list[str]:
        for key in keys:
            if not SSH_PUBLIC_KEY.match(key.strip()):
                raise ValueError(f"{key[:30]!r}... is not an SSH public key")
        return [k.strip() for k in keys]

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value):
            raise ValueError(f"{value!r} is not a valid Linux user name")
        return value


class PkiSettings(Model):
    ca_validity_hours: int = Field(default=87600, ge=24)
    cert_validity_hours: int = Field(default=8760, ge=24)
    early_renewal_hours: int = Field(default=720, ge=0)

    @model_validator(mode="after")
    def _ordering(self) -> PkiSettings:
        if self.cert_validity_hours > self.ca_validity_hours:
            raise ValueError("certValidityHours cannot exceed caValidityHours")
        if self.early_renewal_hours >= self.cert_validity_hours:
            raise ValueError("earlyRenewalHours must be below certValidityHours")
        return self


class ClusterSettings(Model):
    name: DnsLabel


class StackSpec(Model):
    """One environment. Built only through `parse_stack`, which reports all problems at once."""

    cluster: ClusterSettings
    hypervisors: list[Hypervisor] = []
    image: ImageSettings = ImageSettings()
    network: NodeNetwork
    ssh: SshSettings = SshSettings()
    ssh_private_key: str | None = None
    harbor_tls_key: str | None = None
    load_balancer: LoadBalancerSpec
    etcd: EtcdSpec
    control_plane: ControlPlaneSpec
    worker_pools: list[WorkerPool] = []
    harbor: HarborSpec = HarborSpec()
    versions: Versions = Versions()
    kubernetes: KubernetesSettings = KubernetesSettings()
    mirrors: Mirrors = Mirrors()
    pki: PkiSettings = PkiSettings()

    @property
    def virtual_router_id(self) -> int:
        """Configured, or derived from the cluster name so two clusters on one L2 segment differ."""
        if self.load_balancer.virtual_router_id is not None:
            return self.load_balancer.virtual_router_id
        return 1 + zlib.crc32(self.cluster.name.encode()) % 255

    def role_nodes(self) -> Iterator[tuple[Role, str, NodeSpec, str]]:
        """Every node with its role, its config path, and its pool name (the role for non-workers)."""
        for i, node in enumerate(self.load_balancer.nodes):
            yield Role.LOAD_BALANCER, f"loadBalancer.nodes[{i}]", node, "loadBalancer"
        for i, node in enumerate(self.etcd.nodes):
            yield Role.ETCD, f"etcd.nodes[{i}]", node, "etcd"
        for i, node in enumerate(self.control_plane.nodes):
            yield Role.CONTROL_PLANE, f"controlPlane.nodes[{i}]", node, "controlPlane"
        for p, pool in enumerate(self.worker_pools):
            base = f"workerPools[{p}]"
            if pool.nodes is not None:
                for i, node in enumerate(pool.nodes):
                    yield Role.WORKER, f"{base}.nodes[{i}]", node, pool.name
            else:
                for i, node in enumerate(pool.expanded_nodes()):
                    yield Role.WORKER, f"{base}(node {i + 1}: {node.name})", node, pool.name
        if self.harbor.enabled and self.harbor.node is not None:
            yield Role.HARBOR, "harbor.node", self.harbor.node, "harbor"

    def size_of(self, role: Role, node: NodeSpec, pool: str) -> Size:
        """A node's size: its own fields, else its pool's, else the role default."""
        default = DEFAULT_SIZE[role]
        wp = next((p for p in self.worker_pools if p.name == pool), None) if role is Role.WORKER else None
        return Size(
            vcpu=node.vcpu or (wp.vcpu if wp else None) or default.vcpu,
            memory_mib=node.memory_mib or (wp.memory_mib if wp else None) or default.memory_mib,
            disk_gib=node.disk_gib or (wp.disk_gib if wp else None) or default.disk_gib,
        )


def _cross_checks(spec: StackSpec) -> list[Problem]:
    """Rules that compare fields with each other; each returns every violation it finds."""
    problems: list[Problem] = []
    problems += _check_addresses(spec)
    problems += _check_names(spec)
    problems += _check_cidrs(spec)
    problems += _check_hypervisor_refs(spec)
    problems += _check_sizes(spec)
    problems += _check_vm_prerequisites(spec)
    return problems


def _check_addresses(spec: StackSpec) -> list[Problem]:
    net = spec.network
    problems: list[Problem] = []
    reserved = {
        net.cidr.network_address: "the network address",
        net.cidr.broadcast_address: "the broadcast address",
        net.gateway: "the gateway",
    }
    if net.gateway not in net.cidr:
        problems.append(Problem("network.gateway", f"{net.gateway} is outside {net.cidr}"))
    if net.vip not in net.cidr:
        problems.append(Problem("network.vip", f"{net.vip} is outside {net.cidr}"))
    elif net.vip in reserved:
        problems.append(Problem("network.vip", f"{net.vip} is {reserved[net.vip]} of {net.cidr}"))
    used: dict[ipaddress.IPv4Address, str] = {net.vip: "network.vip"}
    for _role, path, node, _pool in spec.role_nodes():
        if node.ip not in net.cidr:
            problems.append(Problem(f"{path}.ip", f"{node.ip} is outside the node network {net.cidr}"))
        elif node.ip in reserved:
            problems.append(Problem(f"{path}.ip", f"{node.ip} is {reserved[node.ip]} of {net.cidr}"))
        if node.ip in used:
            problems.append(Problem(f"{path}.ip", f"{node.ip} is already used by {used[node.ip]}"))
        else:
            used[node.ip] = path
    return problems


def _check_names(spec: StackSpec) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for _role, path, node, _pool in spec.role_nodes():
        if node.name in seen:
            problems.append(Problem(f"{path}.name", f"{node.name!r} is already used by {seen[node.name]}"))
        else:
            seen[node.name] = path
    pools: dict[str, int] = {}
    for i, pool in enumerate(spec.worker_pools):
        if pool.name in pools:
            problems.append(
                Problem(f"workerPools[{i}].name", f"{pool.name!r} is already used by workerPools[{pools[pool.name]}]")
            )
        pools.setdefault(pool.name, i)
    hvs: dict[str, int] = {}
    for i, hv in enumerate(spec.hypervisors):
        if hv.name in hvs:
            problems.append(
                Problem(f"hypervisors[{i}].name", f"{hv.name!r} is already used by hypervisors[{hvs[hv.name]}]")
            )
        hvs.setdefault(hv.name, i)
    return problems


def _check_cidrs(spec: StackSpec) -> list[Problem]:
    k8s, node_net = spec.kubernetes, spec.network.cidr
    problems: list[Problem] = []
    if k8s.pod_cidr.overlaps(k8s.service_cidr):
        problems.append(
            Problem("kubernetes.serviceCidr", f"{k8s.service_cidr} overlaps kubernetes.podCidr {k8s.pod_cidr}")
        )
    for field, cidr in (("podCidr", k8s.pod_cidr), ("serviceCidr", k8s.service_cidr)):
        if cidr.overlaps(node_net):
            problems.append(Problem(f"kubernetes.{field}", f"{cidr} overlaps the node network {node_net}"))
    return problems


def _check_hypervisor_refs(spec: StackSpec) -> list[Problem]:
    names = {hv.name for hv in spec.hypervisors}
    known = ", ".join(sorted(names)) or "none defined"
    problems: list[Problem] = []
    for _role, path, node, _pool in spec.role_nodes():
        if node.hypervisor is not None and node.hypervisor not in names:
            problems.append(
                Problem(f"{path}.hypervisor", f"unknown hypervisor {node.hypervisor!r} (known: {known})")
            )
    for i, pool in enumerate(spec.worker_pools):
        for j, name in enumerate(pool.hypervisors or []):
            if name not in names:
                problems.append(
                    Problem(f"workerPools[{i}].hypervisors[{j}]", f"unknown hypervisor {name!r} (known: {known})")
                )
    return problems


def _check_sizes(spec: StackSpec) -> list[Problem]:
    problems: list[Problem] = []
    for role, path, node, pool in spec.role_nodes():
        size, minimum = spec.size_of(role, node, pool), MINIMUM_SIZE[role]
        for field, key in (("vcpu", "vcpu"), ("memory_mib", "memoryMib"), ("disk_gib", "diskGib")):
            have, need = getattr(size, field), getattr(minimum, field)
            if have < need:
                problems.append(
                    Problem(f"{path}.{key}", f"{have} is below the minimum {need} for a {role.value} node")
                )
    return problems


def _check_vm_prerequisites(spec: StackSpec) -> list[Problem]:
    """VM nodes need a hypervisor to live on and a way in (a key we can authorise)."""
    problems: list[Problem] = []
    vm_nodes = [path for _r, path, node, _p in spec.role_nodes() if node.existing is None]
    if vm_nodes and not spec.hypervisors:
        problems.append(
            Problem("hypervisors", f"{len(vm_nodes)} node(s) are VMs (e.g. {vm_nodes[0]}) but no hypervisor is defined")
        )
    if spec.harbor.certificate is not None and spec.harbor_tls_key is None:
        problems.append(Problem("harborTlsKey", "harbor.certificate is set but its private key is missing"))
    return problems


def parse_stack(config: dict[str, Any], secret_keys: frozenset[str] = frozenset()) -> StackSpec:
    """Validate a stack's `k8s-ha:` config (keys without the namespace) into a StackSpec.

    Raises SpecError listing every problem, each as `config.path: message`.
    """
    problems = [
        Problem(key, "must be a secret: set it with `pulumi config set --secret " + key + "`")
        for key in sorted(SECRET_KEYS & config.keys())
        if key not in secret_keys
    ]
    try:
        spec = StackSpec.model_validate(config)
    except ValidationError as exc:
        raise SpecError(problems + _from_pydantic(exc)) from None
    problems += _cross_checks(spec)
    from components.placement import placement_problems  # placement rules need a valid spec

    problems += placement_problems(spec)
    if problems:
        raise SpecError(problems)
    return spec


def _from_pydantic(exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors():
        path = _format_loc(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see the configuration reference)"
        elif err["type"] == "missing":
            message = "is required"
        problems.append(Problem(path or "(stack)", message))
    return problems


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or part.startswith("function-"):
            continue  # pydantic's tags for validator/union layers, not config keys
        else:
            out += ("." if out else "") + str(part)
    return out
