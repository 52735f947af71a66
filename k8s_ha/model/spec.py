"""Typed model of one stack's configuration, and every rule that makes a stack valid.

The model mirrors the stack file: each top-level field is one `k8s-ha:<key>` config entry, so an
error path such as `etcd.nodes[3].ip` points straight at the line to fix.

Every rule lives on the model it belongs to: per-field rules as `Check` annotations, per-model
rules as `@rule` methods, and the rules that compare fields across the whole stack as `@rule`
methods of `StackSpec`. They run whenever a model is built, from a stack file or from Python
(k8s_ha/model/validation.py), and none of them stops the others.
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field

from k8s_ha.model import timers, versions
from k8s_ha.model.artifacts import (
    ArtifactError,
    ArtifactSettings,
    ArtifactVersions,
    contested_message,
    images,
    registry_routes,
    release_files,
)
from k8s_ha.model.errors import Problem, SpecError
from k8s_ha.model.validation import Check, Model, at_most, between, rule, suggestion

__all__ = ["Check", "Model", "Problem", "SpecError", "at_most", "between", "rule"]  # re-exported

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
# Values that end up inside systemd unit files: a conservative character set, so no value can add
# a line or a directive to the unit.
SYSTEMD_CALENDAR = re.compile(r"^[A-Za-z0-9 *:/,.~+-]+$")
ABSOLUTE_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")
IMAGE_REPOSITORY = re.compile(r"[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)*")



class Role(StrEnum):
    """What a node does; the order is the order in which layers come up."""

    LOAD_BALANCER = "loadBalancer"
    ETCD = "etcd"
    CONTROL_PLANE = "controlPlane"
    WORKER = "worker"
    HARBOR = "harbor"


@dataclass(frozen=True)
class Size:
    vcpu: int
    memory_mib: int
    disk_gib: int


# Recommended sizes for production (LB 4 vCPU/4 GB, etcd 4/8 GB, master 4/8 GB) and
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


# Upper bounds, checked before anything is expanded (docs/configuration.md, "Limits"). MAX_NODES is
# the largest cluster Kubernetes supports (5,000 nodes, "Considerations for large clusters").
MAX_NODES = 5000
MAX_POOLS = 100
MAX_HYPERVISORS = 64
MAX_MASTERS = 7
MAX_DNS_SERVERS = 3  # glibc reads at most 3 nameserver lines (MAXNS)
MAX_LIST = 100


def _dns_label(value: str) -> str | None:
    if DNS_LABEL.match(value):
        return None
    return (
        f"{value!r} is not a DNS-1123 label (lowercase letters, digits and '-', "
        "starting and ending with a letter or digit, at most 63 characters)"
    )


def _url(value: str) -> str | None:
    return None if HTTP_URL.match(value) else f"{value!r} is not an http(s):// or file:// URL"


def _image_source(value: str) -> str | None:
    if value.startswith("/") or HTTP_URL.match(value):
        return None
    return f"{value!r} is neither an absolute path nor an http(s)/file URL"


def _ssh_key(value: str) -> str | None:
    if SSH_PUBLIC_KEY.match(value.strip()):
        return None
    return f"{value[:32]!r}... is not an SSH public key such as 'ssh-ed25519 AAAA...'"


def _supported(name: str, accept: Callable[[tuple[int, int, int]], bool], hint: str) -> Check:
    def rule(value: str) -> str | None:
        parsed = versions.parse(value)
        if parsed is None:
            return f"{value!r} is not a version such as 1.2.3"
        return None if accept(parsed) else f"{name} {value} is not supported ({hint})"

    return Check(rule)


def _address_text(value: Any) -> Any:
    """Addresses are written as text; pydantic would otherwise read `vip: 12` as 0.0.0.12."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv4Network | str):
        return value
    raise ValueError(f"{value!r} is not an address written as text, e.g. '10.0.0.5' or '10.0.0.0/24'")


IPv4 = Annotated[ipaddress.IPv4Address, BeforeValidator(_address_text)]
IPv4Net = Annotated[ipaddress.IPv4Network, BeforeValidator(_address_text)]
DnsLabel = Annotated[str, Check(_dns_label)]
Url = Annotated[str, Check(_url)]
ImageSource = Annotated[str, Check(_image_source)]
# Optional fields carry the Check on the whole annotation: inside `X | None` it would be hidden
# from the field checks (a unit test guards against that).
OptionalUrl = Annotated[str | None, Check(_url)]
OptionalImageSource = Annotated[str | None, Check(_image_source)]


class ExistingHost(Model):
    """A machine made elsewhere: no VM is created, the program only connects to it.

    Its SSH host key cannot be injected, so the user pins it here (no trust on first use).
    """

    host_key: Annotated[str, Check(_ssh_key)]
    address: str | None = None
    user: str | None = None
    failure_domain: str | None = None


class NodeSpec(Model):
    name: DnsLabel
    ip: IPv4
    hypervisor: str | None = None
    vcpu: Annotated[int | None, between(1, 256)] = None
    memory_mib: Annotated[int | None, between(128, 4 * 1024 * 1024)] = None
    disk_gib: Annotated[int | None, between(1, 64 * 1024)] = None
    existing: ExistingHost | None = None

    @rule("existing", "hypervisor")
    def existing_is_not_placed(self) -> Iterator[tuple[str, str]]:
        if self.existing is not None and self.hypervisor is not None:
            yield "hypervisor", "an existing host is not placed on a hypervisor: drop 'hypervisor'"


class BridgeAttachment(Model):
    bridge: str | None = None
    network: str | None = None

    @rule("bridge", "network")
    def one_attachment(self) -> Iterator[tuple[str, str]]:
        if (self.bridge is None) == (self.network is None):
            yield "", "set exactly one of 'bridge' (a host bridge) or 'network' (a libvirt network)"


def _libvirt_uri(value: str) -> str | None:
    if LIBVIRT_URI.match(value):
        return None
    return f"{value!r} is not a libvirt URI such as qemu:///system or qemu+ssh://root@hv1/system"


class Hypervisor(Model):
    name: DnsLabel
    uri: Annotated[str, Check(_libvirt_uri)]
    pool: str = "default"
    attach: BridgeAttachment = BridgeAttachment(bridge="br0")
    domain_type: Literal["kvm", "qemu"] = "kvm"
    base_image: OptionalImageSource = None


class ImageSettings(Model):
    """The cloud image every VM's root disk is cloned from (needs cloud-init and sshd)."""

    source: ImageSource = (
        "https://cloud.debian.org/images/cloud/trixie/latest/debian-13-genericcloud-amd64.qcow2"
    )
    format: Literal["qcow2", "raw"] = "qcow2"


def _ifname(value: str) -> str | None:
    ok = re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", value)
    return None if ok else f"{value!r} is not a Linux interface name"


class NodeNetwork(Model):
    cidr: IPv4Net
    gateway: IPv4
    dns: Annotated[list[IPv4], at_most(MAX_DNS_SERVERS, "DNS servers")]
    vip: IPv4
    interface: Annotated[str, Check(_ifname)] = "eth0"
    search_domains: Annotated[list[str], at_most(MAX_LIST, "search domains")] = Field(default_factory=list)

    @rule("dns")
    def some_dns(self) -> Iterator[tuple[str, str]]:
        if not self.dns:
            yield "dns", "needs at least one DNS server"


class HaproxySettings(Model):
    """Health-check timings: a dead apiserver leaves the pool after one interval and fall - 1 fast
    checks (~2 s by default); until then a connection it refuses is redispatched to another."""

    check_interval_ms: Annotated[int, between(100, 60000)] = timers.HAPROXY_CHECK_INTERVAL_MS
    fall: Annotated[int, between(1, 10)] = timers.HAPROXY_FALL
    rise: Annotated[int, between(1, 10)] = timers.HAPROXY_RISE
    connect_timeout_ms: Annotated[int, between(100, 60000)] = timers.HAPROXY_CONNECT_TIMEOUT_MS
    client_timeout_s: Annotated[int, between(1, 86400)] = 3600
    stats_port: Annotated[int, between(1, 65535)] = 8404


class IngressFrontend(Model):
    enabled: bool = False
    http_node_port: Annotated[int, between(30000, 32767)] = 30080
    https_node_port: Annotated[int, between(30000, 32767)] = 30443


class HaproxyCheck(Model):
    """keepalived's check that the local HAProxy accepts connections (its track script). A failed
    check moves the node to FAULT and the VIP to the peer. Each run forks a shell, so on slow or
    starved hosts (TCG guests) a longer interval and timeout keep the check from timing out by itself."""

    interval_s: Annotated[int, between(1, 60)] = timers.TRACK_INTERVAL_S
    timeout_s: Annotated[int, between(1, 60)] = timers.TRACK_TIMEOUT_S
    fall: Annotated[int, between(1, 10)] = 1
    rise: Annotated[int, between(1, 10)] = 2

    @rule("timeout_s", "interval_s")
    def timeout_within_interval(self) -> Iterator[tuple[str, str]]:
        if self.timeout_s > self.interval_s:
            yield "timeoutS", "must not exceed intervalS (keepalived skips a run while the last one is still running)"


def _centiseconds(value: int) -> str | None:
    if value % 10:
        return "VRRPv3 adverts are in centiseconds: use a multiple of 10 ms"
    return between(10, 40950).rule(value)


class LoadBalancerSpec(Model):
    """The keepalived pair. VRRPv3 (default) allows sub-second adverts, so a lost host is noticed
    in 3 adverts instead of 3 s, but has no authentication: `check_unicast_src` then accepts
    adverts only from the peer. VRRPv2 adds a (cleartext, 8-character) password, whole seconds."""

    nodes: Annotated[list[NodeSpec], at_most(MAX_LIST, "nodes")]
    virtual_router_id: Annotated[int | None, between(1, 255)] = None
    nopreempt: bool = False
    vrrp_version: Literal[2, 3] = 3
    advert_interval_ms: Annotated[int, Check(_centiseconds)] = timers.ADVERT_INTERVAL_MS
    haproxy: HaproxySettings = HaproxySettings()
    haproxy_check: HaproxyCheck = HaproxyCheck()
    harbor_frontend: bool = False
    ingress: IngressFrontend = IngressFrontend()

    @rule("nodes")
    def a_pair(self) -> Iterator[tuple[str, str]]:
        if len(self.nodes) != 2:
            yield "nodes", (
                f"needs exactly 2 load-balancer nodes (a keepalived MASTER and BACKUP), "
                f"got {len(self.nodes)}"
            )

    @rule("vrrp_version", "advert_interval_ms")
    def whole_seconds_on_v2(self) -> Iterator[tuple[str, str]]:
        if self.vrrp_version == 2 and self.advert_interval_ms % 1000:
            yield "advertIntervalMs", "VRRPv2 adverts are whole seconds: use vrrpVersion 3 for sub-second"


def _sha256(value: str) -> str | None:
    return None if SHA256.match(value) else "must be 64 lowercase hex digits"


class EtcdSource(Model):
    """Where etcd comes from: the upstream release of versions.etcd (pinned sha256, through
    artifacts.filesRepo), the distribution's package, or any tarball with its checksum."""

    kind: Literal["release", "package", "tarball"] = "release"
    url: OptionalUrl = None
    sha256: Annotated[str | None, Check(_sha256)] = None

    @rule("kind", "url", "sha256")
    def tarball_is_pinned(self) -> Iterator[tuple[str, str]]:
        if self.kind == "tarball":
            for key in ("url", "sha256"):
                if getattr(self, key) is None:
                    yield key, "a tarball source needs a url and its sha256 checksum"


def _calendar(value: str) -> str | None:
    ok = SYSTEMD_CALENDAR.match(value)
    return None if ok else f"{value!r} is not a systemd calendar expression such as 'hourly' or '*:0/30'"


def _absolute_path(value: str) -> str | None:
    if ABSOLUTE_PATH.match(value) and "/../" not in f"{value}/":
        return None
    return f"{value!r} must be an absolute path of letters, digits and ._-/ without '..'"


class EtcdBackup(Model):
    on_calendar: Annotated[str, Check(_calendar)] = "hourly"
    retain: Annotated[int, between(1, 10000)] = 24
    directory: Annotated[str, Check(_absolute_path)] = "/var/backups/etcd"


class EtcdRestore(Model):
    """Disaster recovery: the external etcd cluster restored from this snapshot (an `etcdctl
    snapshot save` file, fetched by every member from `url` and checked against `sha256`), once."""

    url: Url
    sha256: Annotated[str, Check(_sha256)]


def derived_virtual_router_id(cluster: str) -> int:
    """A VRRP router id from the cluster name, so two clusters on one L2 segment differ."""
    return 1 + zlib.crc32(cluster.encode()) % 255


def quorum(members: int) -> int:
    return members // 2 + 1


def quorum_table(up_to: int = 9) -> str:
    """etcd's failure-tolerance table (n members, n/2+1 quorum), in words."""
    return ", ".join(f"{n}->{n - quorum(n)}" for n in range(1, up_to + 1))


class EtcdSpec(Model):
    nodes: Annotated[list[NodeSpec], at_most(MAX_LIST, "members")]
    heartbeat_interval_ms: Annotated[int, between(10, 10000)] = timers.HEARTBEAT_INTERVAL_MS
    election_timeout_ms: Annotated[int, between(50, 50000)] = timers.ELECTION_TIMEOUT_MS
    pre_vote: bool = True  # etcd 3.4 defaults to off; measured in the lab (docs/ha.md)
    source: EtcdSource = EtcdSource()
    backup: EtcdBackup = EtcdBackup()
    restore: EtcdRestore | None = None

    @rule("nodes")
    def odd_members(self) -> Iterator[tuple[str, str]]:
        count = len(self.nodes)
        if count not in (3, 5, 7):
            yield "nodes", (
                f"{count} members: use 3, 5 or 7. etcd needs a majority (n/2+1) alive, so an even "
                "count tolerates no more failures than the odd count below it and fewer than 3 "
                f"tolerates none (members->failures tolerated: {quorum_table(7)})"
            )

    @rule("election_timeout_ms", "heartbeat_interval_ms")
    def election_after_heartbeats(self) -> Iterator[tuple[str, str]]:
        least = timers.MIN_ELECTION_HEARTBEATS
        if self.election_timeout_ms < least * self.heartbeat_interval_ms:
            yield "electionTimeoutMs", (
                f"should be at least {least}x heartbeatIntervalMs (etcd tuning guide: fewer missed heartbeats "
                f"than a busy leader can miss would start an election), got {self.election_timeout_ms} ms "
                f"< {least} x {self.heartbeat_interval_ms} ms")


ETCD_CLIENT_URL = re.compile(r"https://[A-Za-z0-9.-]+:\d{1,5}")


def etcd_client_urls(urls: Sequence[str]) -> str | None:
    """How the apiservers reach etcd (the members' client URLs, which the stack derives from
    etcd.nodes): at least one, each over TLS, as `--etcd-servers` takes them."""
    if not urls:
        return "needs at least one etcd client URL, such as https://10.0.0.11:2379"
    bad = [url for url in urls if not (isinstance(url, str) and ETCD_CLIENT_URL.fullmatch(url))]
    return f"{bad} are not etcd client URLs such as https://10.0.0.11:2379" if bad else None


class ControlPlaneSpec(Model):
    nodes: Annotated[list[NodeSpec], at_most(MAX_MASTERS, "control-plane nodes")]

    @rule("nodes")
    def enough_masters(self) -> Iterator[tuple[str, str]]:
        if len(self.nodes) < 2:
            yield "nodes", f"needs at least 2 control-plane nodes for HA (3 recommended), got {len(self.nodes)}"


LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
LABEL_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def _labels(labels: dict[str, str]) -> str | None:
    """Kubernetes label syntax: [prefix/]name, values of at most 63 characters."""
    bad = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (prefix and not LABEL_PREFIX.fullmatch(prefix)) or not LABEL_NAME.fullmatch(name):
            bad.append(f"key {key!r}")
        if value and not LABEL_NAME.fullmatch(value):
            bad.append(f"value {value!r} of {key!r}")
    return f"not valid Kubernetes labels: {', '.join(bad)}" if bad else None


class WorkerPool(Model):
    """Either `count` nodes numbered from `firstIp`, or an explicit `nodes` list."""

    name: DnsLabel
    count: Annotated[int | None, between(0, MAX_NODES)] = None
    first_ip: IPv4 | None = None
    nodes: Annotated[list[NodeSpec] | None, at_most(MAX_NODES, "nodes")] = None
    vcpu: Annotated[int | None, between(1, 256)] = None
    memory_mib: Annotated[int | None, between(128, 4 * 1024 * 1024)] = None
    disk_gib: Annotated[int | None, between(1, 64 * 1024)] = None
    hypervisors: Annotated[list[str] | None, at_most(MAX_HYPERVISORS, "hypervisors")] = None
    labels: Annotated[dict[str, str], Check(_labels), at_most(MAX_LIST, "labels")] = Field(default_factory=dict)

    @rule("count", "nodes", "first_ip")
    def count_or_nodes(self) -> Iterator[tuple[str, str]]:
        if (self.count is None) == (self.nodes is None):
            yield "", "set either 'count' (with 'firstIp') or 'nodes'"
        elif self.count is not None and self.first_ip is None:
            yield "firstIp", "'count' needs 'firstIp', the address of the first node"

    def expanded_nodes(self) -> list[NodeSpec]:
        """The pool's nodes; counted pools get names `<pool>-<n>` and consecutive IPs."""
        if self.nodes is not None:
            return self.nodes
        if self.count is None or self.first_ip is None:
            return []
        first = int(self.first_ip)
        # Derived from a checked pool: built without re-checking each of up to MAX_NODES nodes.
        return [
            NodeSpec.model_construct(name=f"{self.name}-{i + 1}", ip=ipaddress.IPv4Address(first + i))
            for i in range(self.count)
        ]


def _dns_name(value: str) -> str | None:
    ok = re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", value)
    return None if ok else f"{value!r} is not a DNS name"


class HarborSpec(Model):
    enabled: bool = False
    node: NodeSpec | None = None
    data_disk_gib: Annotated[int, between(20, 64 * 1024)] = 200
    proxy_cache: bool = True
    hostname: Annotated[str | None, Check(_dns_name)] = None
    certificate: str | None = None

    @rule("enabled", "node")
    def a_node_when_enabled(self) -> Iterator[tuple[str, str]]:
        if self.enabled and self.node is None:
            yield "node", "enabled Harbor needs a node"

    @rule("certificate", "hostname")
    def hostname_for_certificate(self) -> Iterator[tuple[str, str]]:
        if self.certificate is not None and self.hostname is None:
            yield "hostname", "a user-supplied certificate needs the hostname it was issued for"


def _release(name: str) -> Check:
    return _supported(name, lambda v: True, "")


class Versions(Model):
    """One version per component; the windows and defaults live in k8s_ha/model/versions.py."""

    kubernetes: Annotated[str, _supported(
        "Kubernetes", lambda v: v[0] == 1 and v[1] in versions.KUBERNETES_MINORS,
        f"{versions.window()}, the minors upstream supports",
    )] = versions.DEFAULT_KUBERNETES
    etcd: Annotated[str, _supported(
        "etcd", lambda v: v[:2] in versions.ETCD_MINORS, "3.6 or 3.7"
    )] = versions.DEFAULT_ETCD
    containerd: Annotated[str, _supported(
        "containerd", lambda v: v[0] in versions.CONTAINERD_MAJORS, "1.x or 2.x"
    )] = versions.DEFAULT_CONTAINERD
    runc: Annotated[str, _release("runc")] = versions.DEFAULT_RUNC
    cni_plugins: Annotated[str, _release("CNI plugins")] = versions.DEFAULT_CNI_PLUGINS
    crictl: Annotated[str, _release("crictl")] = versions.DEFAULT_CRICTL
    harbor: Annotated[str, _supported(
        "Harbor", lambda v: v[0] == 2 and v[1] >= 10, "2.10 or later"
    )] = versions.DEFAULT_HARBOR

    @rule("kubernetes", "containerd")
    def containerd_runs_kubernetes(self) -> Iterator[tuple[str, str]]:
        kubernetes, containerd = versions.parse(self.kubernetes), versions.parse(self.containerd)
        if kubernetes is None or containerd is None or containerd[0] not in versions.CONTAINERD_MAJORS:
            return  # the field checks say so
        if kubernetes[1] > versions.LAST_MINOR_ON_CONTAINERD_1 and containerd[0] < 2:
            yield "containerd", (
                f"containerd {self.containerd} cannot run Kubernetes {self.kubernetes}: Kubernetes "
                f"1.{versions.LAST_MINOR_ON_CONTAINERD_1} was the last release on containerd 1.x; "
                f"use containerd 2.x (default {versions.DEFAULT_CONTAINERD})"
            )


class Failover(Model):
    """How fast the cluster reacts to a lost node or master (docs/configuration.md, "Failover").

    Kubernetes' own defaults wait about 6 minutes before pods leave an unreachable node; an HA
    cluster's users expect about a minute and a half (k8s_ha/model/timers.py has the sum). Lower
    values trade speed for NotReady nodes and evictions on short blips.
    """

    # kubelet nodeLeaseDurationSeconds: the kubelet renews its node lease every quarter of this.
    node_lease_duration_s: Annotated[int, between(8, 300)] = timers.NODE_LEASE_DURATION_S
    # controller-manager --node-monitor-grace-period: a node without a heartbeat this long is NotReady.
    node_monitor_grace_period_s: Annotated[int, between(8, 600)] = timers.NODE_MONITOR_GRACE_PERIOD_S
    # controller-manager --node-monitor-period: how often the node lifecycle controller looks.
    node_monitor_period_s: Annotated[int, between(1, 60)] = timers.NODE_MONITOR_PERIOD_S
    # controller-manager --node-eviction-rate: NotReady nodes tainted per second (in a healthy zone).
    node_eviction_rate: Annotated[float, between(0.01, 100)] = timers.NODE_EVICTION_RATE
    # apiserver --default-{not-ready,unreachable}-toleration-seconds: pods then leave a NotReady node.
    pod_eviction_timeout_s: Annotated[int, between(0, 3600)] = timers.POD_EVICTION_TIMEOUT_S
    # controller-manager and scheduler leader election.
    leader_lease_s: Annotated[int, between(5, 300)] = timers.LEADER_LEASE_S
    leader_renew_deadline_s: Annotated[int, between(3, 300)] = timers.LEADER_RENEW_DEADLINE_S
    leader_retry_period_s: Annotated[int, between(1, 60)] = timers.LEADER_RETRY_PERIOD_S

    @rule("leader_retry_period_s", "leader_renew_deadline_s", "leader_lease_s")
    def leader_timers_ordered(self) -> Iterator[tuple[str, str]]:
        if not self.leader_retry_period_s < self.leader_renew_deadline_s < self.leader_lease_s:
            yield "leaderRenewDeadlineS", (
                f"leader election needs retryPeriod < renewDeadline < lease, got {self.leader_retry_period_s} s, "
                f"{self.leader_renew_deadline_s} s, {self.leader_lease_s} s")

    @rule("node_lease_duration_s", "node_monitor_grace_period_s", "node_monitor_period_s")
    def node_heartbeats_fit_the_grace(self) -> Iterator[tuple[str, str]]:
        renewal_s = self.node_lease_duration_s / 4
        needed = timers.MIN_MISSED_NODE_RENEWALS * renewal_s
        if self.node_monitor_grace_period_s < needed:
            yield "nodeMonitorGracePeriodS", (
                f"a node must be allowed {timers.MIN_MISSED_NODE_RENEWALS} missed lease renewals before it is "
                f"NotReady: the kubelet renews every nodeLeaseDurationS / 4 = {renewal_s:g} s, so the grace "
                f"needs at least {needed:g} s, got {self.node_monitor_grace_period_s} s")
        if self.node_monitor_period_s >= self.node_monitor_grace_period_s:
            yield "nodeMonitorPeriodS", (
                f"the node monitor must look more often than the grace period, got every "
                f"{self.node_monitor_period_s} s for {self.node_monitor_grace_period_s} s")


class KubernetesSettings(Model):
    # false: machines, load balancers, etcd and Harbor only; no kubeadm, add-ons or kubernetes
    # provider (stage a rollout, or run the front door and etcd where release files cannot reach yet).
    bootstrap: bool = True
    pod_cidr: IPv4Net = ipaddress.IPv4Network("10.244.0.0/16")
    service_cidr: IPv4Net = ipaddress.IPv4Network("10.96.0.0/12")
    cni: Literal["calico", "flannel"] = "calico"
    cluster_domain: str = "cluster.local"
    metrics_server: bool = False
    coredns_replicas: Annotated[int, between(2, 10)] = 2
    failover: Failover = Failover()
    # Multiplies every bounded wait of the Kubernetes layer (kubeadm's timeouts, the steps' waits) for
    # slow hosts: nested or emulated virtualisation (the lab's TCG guests use 5).
    wait_scale: Annotated[int, between(1, 20)] = 1
    # Hosts still on cgroup v1 (older bare-metal distributions). From 1.35 the kubelet refuses
    # cgroup v1 unless told (failCgroupV1: false) and kubeadm's SystemVerification preflight fails
    # there; upstream deprecates it, so `validate` warns. Off: the node preflight refuses cgroup v1.
    allow_cgroup_v1: bool = False
    # Nodes that are privileged system containers (LXC/LXD, kind-style) rather than VMs: kube-proxy
    # leaves the machine-global conntrack table size alone, and containerd does not ask for OOM score
    # adjustments that root inside such a container may not make (no CAP_SYS_RESOURCE).
    system_container_nodes: bool = False

    @rule("pod_cidr", "service_cidr")
    def pods_and_services_apart(self) -> Iterator[tuple[str, str]]:
        if self.pod_cidr.overlaps(self.service_cidr):
            yield "serviceCidr", f"{self.service_cidr} overlaps podCidr {self.pod_cidr}"


def _image_repository(value: str) -> str | None:
    ok = IMAGE_REPOSITORY.fullmatch(value)
    return None if ok else f"{value!r} is not an image repository such as registry.k8s.io"


class Mirrors(Model):
    """Every download location, so firewalled and air-gapped sites can point at their mirrors."""

    image_repository: Annotated[str, Check(_image_repository)] = "registry.k8s.io"
    # apt mirrors written by cloud-init; unset keeps the image's own sources.
    os_packages: OptionalUrl = None
    os_security_packages: OptionalUrl = None
    harbor_installer: Url = (
        "https://github.com/goharbor/harbor/releases/download/v{version}/"
        "harbor-offline-installer-v{version}.tgz"
    )
    harbor_installer_sha256: Annotated[str | None, Check(_sha256)] = None


def _linux_user(value: str) -> str | None:
    ok = re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value)
    return None if ok else f"{value!r} is not a valid Linux user name"


def _ssh_keys(keys: list[str]) -> str | None:
    bad = [i for i, key in enumerate(keys) if _ssh_key(key)]
    return f"entries {bad} are not SSH public keys such as 'ssh-ed25519 AAAA...'" if bad else None


class SshSettings(Model):
    user: Annotated[str, Check(_linux_user)] = "k8s"
    port: Annotated[int, between(1, 65535)] = 22
    # How long a new VM's first step keeps dialling its SSH: 5 TCG guests booting together on 2
    # cores answered after 427-443 s; a KVM guest after well under a minute.
    boot_timeout_s: Annotated[int, between(60, 7200)] = 900
    authorized_keys: Annotated[list[str], Check(_ssh_keys), at_most(MAX_LIST, "keys")] = Field(default_factory=list)


class PkiSettings(Model):
    ca_validity_hours: Annotated[int, between(24, 1_000_000)] = 87600
    cert_validity_hours: Annotated[int, between(24, 1_000_000)] = 8760
    early_renewal_hours: Annotated[int, between(0, 1_000_000)] = 720

    @rule("cert_validity_hours", "ca_validity_hours")
    def cert_within_ca(self) -> Iterator[tuple[str, str]]:
        if self.cert_validity_hours > self.ca_validity_hours:
            yield "certValidityHours", "cannot exceed caValidityHours"

    @rule("early_renewal_hours", "cert_validity_hours")
    def renewal_before_expiry(self) -> Iterator[tuple[str, str]]:
        if self.early_renewal_hours >= self.cert_validity_hours:
            yield "earlyRenewalHours", "must be below certValidityHours"


class ClusterSettings(Model):
    name: DnsLabel


# The fields that hold nodes: the stack-wide rules that go through every node read all of them.
NODE_FIELDS = ("load_balancer", "etcd", "control_plane", "worker_pools", "harbor")


class StackSpec(Model):
    """One environment: `parse_stack` builds it from a stack file's config, reporting every problem."""

    cluster: ClusterSettings
    hypervisors: Annotated[list[Hypervisor], at_most(MAX_HYPERVISORS, "hypervisors")] = Field(default_factory=list)
    image: ImageSettings = ImageSettings()
    network: NodeNetwork
    ssh: SshSettings = SshSettings()
    ssh_private_key: str | None = None
    harbor_tls_key: str | None = None
    load_balancer: LoadBalancerSpec
    etcd: EtcdSpec
    control_plane: ControlPlaneSpec
    worker_pools: Annotated[list[WorkerPool], at_most(MAX_POOLS, "worker pools")] = Field(default_factory=list)
    harbor: HarborSpec = HarborSpec()
    versions: Versions = Versions()
    kubernetes: KubernetesSettings = KubernetesSettings()
    mirrors: Mirrors = Mirrors()
    artifacts: ArtifactSettings = ArtifactSettings()
    pki: PkiSettings = PkiSettings()

    # The stack-wide rules; each names the fields it reads, so a field that failed its type check
    # leaves out only the rules that need it. A node section that failed counts as empty: the
    # rules still check every node that did parse (its own problems are reported as they are).
    _empty_when_unparsed: ClassVar[dict[str, Callable[[], Any]]] = {
        "load_balancer": lambda: LoadBalancerSpec.model_construct(nodes=[]),
        "etcd": lambda: EtcdSpec.model_construct(nodes=[]),
        "control_plane": lambda: ControlPlaneSpec.model_construct(nodes=[]),
        "worker_pools": list,
        "harbor": HarborSpec,
    }

    @rule(*NODE_FIELDS)
    def within_limits(self) -> Iterator[tuple[str, str]]:
        return _pairs(_oversized(self))

    @rule(*NODE_FIELDS, "network")
    def addresses_fit(self) -> Iterator[tuple[str, str]]:
        return _pairs(_check_addresses(self)) if _expansion_is_safe(self) else iter(())

    @rule(*NODE_FIELDS, "hypervisors")
    def names_unique(self) -> Iterator[tuple[str, str]]:
        return _pairs(_check_names(self)) if _expansion_is_safe(self) else iter(())

    @rule(*NODE_FIELDS, "network", "kubernetes")
    def cidrs_fit(self) -> Iterator[tuple[str, str]]:
        return _pairs(_check_cidrs(self)) if _expansion_is_safe(self) else iter(())

    @rule(*NODE_FIELDS, "hypervisors")
    def hypervisors_known(self) -> Iterator[tuple[str, str]]:
        return _pairs(_check_hypervisor_refs(self)) if _expansion_is_safe(self) else iter(())

    @rule(*NODE_FIELDS)
    def sizes_enough(self) -> Iterator[tuple[str, str]]:
        return _pairs(_check_sizes(self)) if _expansion_is_safe(self) else iter(())

    @rule(*NODE_FIELDS, "hypervisors", "harbor_tls_key")
    def vm_prerequisites(self) -> Iterator[tuple[str, str]]:
        return _pairs(_check_vm_prerequisites(self)) if _expansion_is_safe(self) else iter(())

    @rule("harbor", "mirrors")
    def harbor_download_pinned(self) -> Iterator[tuple[str, str]]:
        return _pairs(_check_harbor_download(self))

    @rule("versions", "artifacts")
    def node_release_files_pinned(self) -> Iterator[tuple[str, str]]:
        return _pairs(_check_release_checksums(self, NODE_RELEASE_KEYS))

    @rule("versions", "artifacts", "etcd")
    def etcd_release_pinned(self) -> Iterator[tuple[str, str]]:
        keys = ("etcd",) if self.etcd.source.kind == "release" else ()
        return _pairs(_check_release_checksums(self, keys))

    @rule("harbor", "artifacts", "versions", "kubernetes", "mirrors")
    def one_source_per_registry(self) -> Iterator[tuple[str, str]]:
        return _pairs(_check_registry_precedence(self))

    @rule("artifacts", "versions", "kubernetes", "mirrors")
    def digests_name_cluster_images(self) -> Iterator[tuple[str, str]]:
        return _pairs(_check_image_digests(self))

    def artifact_versions(self) -> ArtifactVersions:
        """The versions and add-ons that decide the stack's files and images."""
        return artifact_versions(self.versions, self.kubernetes, self.mirrors)

    @property
    def virtual_router_id(self) -> int:
        """Configured, or derived from the cluster name so two clusters on one L2 segment differ."""
        if self.load_balancer.virtual_router_id is not None:
            return self.load_balancer.virtual_router_id
        return derived_virtual_router_id(self.cluster.name)

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


def _pairs(problems: list[Problem]) -> Iterator[tuple[str, str]]:
    return ((p.path, p.message) for p in problems)


def _cross_checks(spec: StackSpec) -> list[Problem]:
    """Rules that compare fields across the stack; each returns every violation it finds."""
    return [
        *_check_addresses(spec),
        *_check_names(spec),
        *_check_cidrs(spec),
        *_check_hypervisor_refs(spec),
        *_check_sizes(spec),
        *_check_vm_prerequisites(spec),
        *_check_harbor_download(spec),
        *_check_release_checksums(spec, (*NODE_RELEASE_KEYS, "etcd")),
    ]


# The release files each `versions` key names; etcd's only when the etcd source is the upstream
# release (otherwise the distribution's package, or the stack's own tarball and sha256).
RELEASE_FILES_OF = {"kubernetes": ("kubeadm", "kubelet", "kubectl"), "containerd": ("containerd",),
                    "runc": ("runc",), "cniPlugins": ("cni-plugins",), "crictl": ("crictl",), "etcd": ("etcd",)}
NODE_RELEASE_KEYS = ("kubernetes", "containerd", "runc", "cniPlugins", "crictl")


def _check_release_checksums(spec: StackSpec, keys: Iterable[str]) -> list[Problem]:
    """Every release file the nodes install needs a pinned sha256 before any VM exists."""
    v = spec.versions
    if v.has_problems():
        return []  # an unsupported version is reported as that, not as a missing checksum
    pinned = ArtifactVersions(kubernetes=v.kubernetes, containerd=v.containerd, runc=v.runc,
                              cni_plugins=v.cni_plugins, crictl=v.crictl, etcd=v.etcd)
    return [Problem(f"versions.{p.path}", p.message) for p in unpinned_releases(pinned, spec.artifacts, keys)]


def unpinned_releases(pinned: ArtifactVersions, artifacts: ArtifactSettings, keys: Iterable[str]) -> list[Problem]:
    """A problem at each version key (`kubernetes`, `etcd`, ...) whose release files have no
    pinned sha256: the stack's rule, also for a component's settings built on their own."""
    problems = []
    for key in keys:
        try:
            release_files(pinned, artifacts, only=frozenset(RELEASE_FILES_OF[key]))
        except ArtifactError as error:
            problems.append(Problem(key, str(error)))
    return problems


def artifact_versions(v: Versions, settings: KubernetesSettings, mirrors: Mirrors) -> ArtifactVersions:
    """The versions and add-ons that decide a cluster's files and images."""
    return ArtifactVersions(kubernetes=v.kubernetes, containerd=v.containerd, runc=v.runc,
                            cni_plugins=v.cni_plugins, crictl=v.crictl, etcd=v.etcd, cni=settings.cni,
                            metrics_server=settings.metrics_server, image_repository=mirrors.image_repository)


def _check_registry_precedence(spec: StackSpec) -> list[Problem]:
    if spec.versions.has_problems():
        return []
    return registry_precedence_problems(spec.artifacts, spec.artifact_versions(),
                                        spec.harbor.enabled and spec.harbor.proxy_cache)


def registry_precedence_problems(artifacts: ArtifactSettings, pulled: ArtifactVersions,
                                 harbor_proxy: bool) -> list[Problem]:
    """A registry both the mirror and Harbor's proxy cache would serve needs the stack to say who
    wins, before any node has a hosts.toml: the stack's rule, also for a Kubernetes config built on
    its own."""
    if artifacts.image_registry is None or not harbor_proxy:
        return []
    try:
        mirrored = {image.registry for image in images(pulled)}
    except ArtifactError:
        return []  # reported by the version checks
    routes = registry_routes(artifacts, mirrored, harbor_proxy)
    if not routes.contested:
        return []
    return [Problem("artifacts.imageRegistryPrecedence", contested_message(routes, artifacts.image_registry))]


def _check_image_digests(spec: StackSpec) -> list[Problem]:
    """A pinned image the cluster never pulls is a typo or a stale table: it would pin nothing."""
    if not spec.artifacts.image_digests or spec.versions.has_problems():
        return []
    try:
        refs = [image.ref for image in images(spec.artifact_versions())]
    except ArtifactError:
        return []  # reported by the version checks
    problems = []
    for ref in spec.artifacts.image_digests:
        if ref not in refs:
            near = suggestion(ref, refs)
            hint = f"did you mean {near!r}?" if near else f"its images: {', '.join(refs)}"
            problems.append(Problem("artifacts.imageDigests", f"{ref!r} is not an image this cluster pulls; {hint}"))
    return problems


def _check_harbor_download(spec: StackSpec) -> list[Problem]:
    message = harbor_download_problem(spec.mirrors.harbor_installer_sha256) if spec.harbor.enabled else None
    return [Problem("mirrors.harborInstallerSha256", message)] if message else []


def harbor_download_problem(sha256: str | None) -> str | None:
    """The installer is verified on the node; without a checksum the Harbor step would refuse
    mid-deployment, after the VMs exist. Refuse here instead."""
    if sha256 is None:
        return ("Harbor is enabled: give the sha256 of the offline installer "
                "(sha256sum harbor-offline-installer-v<version>.tgz)")
    return None


def _check_addresses(spec: StackSpec) -> list[Problem]:
    net = spec.network
    nodes = [(f"{path}.ip", node.ip) for _role, path, node, _pool in spec.role_nodes()]
    return address_problems(net.cidr, net.vip, nodes, gateway=net.gateway)


def address_problems(cidr: ipaddress.IPv4Network, vip: ipaddress.IPv4Address,
                     nodes: list[tuple[str, ipaddress.IPv4Address]], *,
                     gateway: ipaddress.IPv4Address | None = None, vip_path: str = "network.vip",
                     gateway_path: str = "network.gateway",
                     elsewhere: Sequence[tuple[str, ipaddress.IPv4Address]] = ()) -> list[Problem]:
    """The VIP, the gateway and every node (path, address) inside `cidr`, none on a reserved
    address, none used twice: the stack's rule, also for a front door built on its own, whose
    backends (`elsewhere`) may sit on another network but use no address of another machine."""
    problems: list[Problem] = []
    reserved = {cidr.network_address: "the network address", cidr.broadcast_address: "the broadcast address"}
    if gateway is not None:
        reserved[gateway] = "the gateway"
        if gateway not in cidr:
            problems.append(Problem(gateway_path, f"{gateway} is outside {cidr}"))
    if vip not in cidr:
        problems.append(Problem(vip_path, f"{vip} is outside {cidr}"))
    elif vip in reserved:
        problems.append(Problem(vip_path, f"{vip} is {reserved[vip]} of {cidr}"))
    used: dict[ipaddress.IPv4Address, str] = {vip: vip_path}
    routed = {path for path, _ in elsewhere}
    for path, ip in [*nodes, *elsewhere]:
        if ip not in cidr:
            if path not in routed:
                problems.append(Problem(path, f"{ip} is outside the node network {cidr}"))
        elif ip in reserved:
            problems.append(Problem(path, f"{ip} is {reserved[ip]} of {cidr}"))
        if ip in used:
            problems.append(Problem(path, f"{ip} is already used by {used[ip].removesuffix('.ip')}"))
        else:
            used[ip] = path
    return problems


def _duplicates(items: list[tuple[str, str]], what: str) -> list[Problem]:
    """(path, value) pairs: every value seen before is reported at its later path."""
    seen: dict[str, str] = {}
    problems = []
    for path, value in items:
        if value in seen:
            problems.append(Problem(path, f"{what} {value!r} is already used by {seen[value]}"))
        else:
            seen[value] = path.removesuffix(".name")
    return problems


def _check_names(spec: StackSpec) -> list[Problem]:
    return [
        *_duplicates([(f"{p}.name", n.name) for _r, p, n, _pool in spec.role_nodes()], "node name"),
        *_duplicates([(f"workerPools[{i}].name", w.name) for i, w in enumerate(spec.worker_pools)], "pool name"),
        *_duplicates([(f"hypervisors[{i}].name", h.name) for i, h in enumerate(spec.hypervisors)], "hypervisor name"),
    ]


NODE_CIDR_MASK = 24  # kube-controller-manager's default --node-cidr-mask-size for IPv4


def _check_cidrs(spec: StackSpec) -> list[Problem]:
    k8s, node_net = spec.kubernetes, spec.network.cidr
    problems: list[Problem] = []
    kube_nodes = sum(1 for r, *_ in spec.role_nodes() if r in (Role.CONTROL_PLANE, Role.WORKER))
    capacity = 2 ** max(0, NODE_CIDR_MASK - k8s.pod_cidr.prefixlen)
    if kube_nodes > capacity:
        problems.append(Problem("kubernetes.podCidr", f"{k8s.pod_cidr} holds {capacity} node ranges of "
                                f"/{NODE_CIDR_MASK}, but the stack has {kube_nodes} Kubernetes nodes"))
    for field, cidr in (("podCidr", k8s.pod_cidr), ("serviceCidr", k8s.service_cidr)):
        if cidr.overlaps(node_net):
            problems.append(Problem(f"kubernetes.{field}", f"{cidr} overlaps the node network {node_net}"))
    return problems


def _check_hypervisor_refs(spec: StackSpec) -> list[Problem]:
    names = {hv.name for hv in spec.hypervisors}
    known = ", ".join(sorted(names)) or "none defined"
    refs = [(f"{path}.hypervisor", node.hypervisor) for _r, path, node, _p in spec.role_nodes()]
    refs += [
        (f"workerPools[{i}].hypervisors[{j}]", name)
        for i, pool in enumerate(spec.worker_pools)
        for j, name in enumerate(pool.hypervisors or [])
    ]
    return [
        Problem(path, f"unknown hypervisor {name!r} (known: {known})")
        for path, name in refs
        if name is not None and name not in names
    ]


def _check_sizes(spec: StackSpec) -> list[Problem]:
    problems: list[Problem] = []
    for role, path, node, pool in spec.role_nodes():
        size = spec.size_of(role, node, pool)
        for field, key in (("vcpu", "vcpu"), ("memory_mib", "memoryMib"), ("disk_gib", "diskGib")):
            if (message := below_minimum(role, field, getattr(size, field))) is not None:
                problems.append(Problem(f"{path}.{key}", message))
    return problems


def below_minimum(role: Role, field: str, have: int) -> str | None:
    """A size (`vcpu`, `memory_mib`, `disk_gib`) below what the role's software needs."""
    need = getattr(MINIMUM_SIZE[role], field)
    return f"{have} is below the minimum {need} for a {role.value} node" if have < need else None


def _check_vm_prerequisites(spec: StackSpec) -> list[Problem]:
    """VM nodes need a hypervisor to live on; a custom Harbor certificate needs its key."""
    problems: list[Problem] = []
    vm_nodes = [path for _r, path, node, _p in spec.role_nodes() if node.existing is None]
    if vm_nodes and not spec.hypervisors:
        problems.append(
            Problem("hypervisors", f"{len(vm_nodes)} node(s) are VMs (e.g. {vm_nodes[0]}) but no hypervisor is defined")
        )
    if spec.harbor.certificate is not None and spec.harbor_tls_key is None:
        problems.append(Problem("harborTlsKey", "harbor.certificate is set but its private key is missing"))
    return problems


def node_count(spec: StackSpec) -> int:
    """How many nodes the stack describes, counted without expanding any pool."""
    fixed = len(spec.load_balancer.nodes) + len(spec.etcd.nodes) + len(spec.control_plane.nodes)
    pools = sum(len(p.nodes) if p.nodes is not None else max(0, p.count or 0) for p in spec.worker_pools)
    return fixed + pools + (1 if spec.harbor.enabled else 0)


def _oversized(spec: StackSpec) -> list[Problem]:
    """Bounds that must hold before any pool is expanded into nodes (a count of 10^8 would
    otherwise build 10^8 node objects); the per-field bounds are reported by the field checks."""
    if any(p.count is not None and p.count > MAX_NODES for p in spec.worker_pools):
        return []  # that pool's own bound says it already
    total = node_count(spec)
    if total > MAX_NODES:
        return [Problem("workerPools", f"{total} nodes in all: at most {MAX_NODES}, the largest cluster "
                        "Kubernetes supports")]
    return []


def _expansion_is_safe(spec: StackSpec) -> bool:
    """The stack-wide rules go through every node: only when the counts are within their bounds
    (a pool with a negative count, refused by its own bound, simply has no nodes)."""
    lists = (spec.worker_pools, spec.load_balancer.nodes, spec.etcd.nodes, spec.control_plane.nodes)
    return (node_count(spec) <= MAX_NODES and all(len(items) <= MAX_LIST for items in lists)
            and all(p.count is None or p.count <= MAX_NODES for p in spec.worker_pools))


def parse_stack(config: dict[str, Any], secret_keys: frozenset[str] = frozenset(),
                problems: tuple[Problem, ...] = ()) -> StackSpec:
    """Validate a stack's `k8s-ha:` config (keys without the namespace) into a StackSpec.

    Raises SpecError listing every problem, each as `config.path: message`: `problems` found
    while reading the file (a misspelt namespace), secrets stored in clear, and everything the
    model's own rules find.
    """
    found = list(problems) + [
        Problem(key, f"must be a secret: set it with `pulumi config set --secret {key}`")
        for key in sorted(SECRET_KEYS & config.keys())
        if key not in secret_keys
    ]
    try:
        spec = StackSpec.parse(config)
    except SpecError as error:
        raise SpecError(found + error.problems, error.partial) from None
    if found:
        raise SpecError(found, spec)
    return spec
