"""The external etcd cluster: each member's environment file, systemd units, certificates, backup
timer, and the member / health steps that bring the cluster up.

What is decided where:
- Everything that follows from the plan is rendered here (names, URLs, TLS paths, timers), so
  `render` shows exactly what a member runs.
- Whether a member bootstraps a new cluster or joins an existing one cannot be known from the plan
  (it depends on what is running), so `etcd-member.sh` decides it on the host at run time and
  writes it to a separate file (STATE_FILE) that the unit also reads. The rendered env file never
  carries ETCD_INITIAL_CLUSTER_STATE, so re-rendering never flips a running member's state.
See docs/etcd.md.
"""

from __future__ import annotations

from k8s_ha.model.spec import ABSOLUTE_PATH, SYSTEMD_CALENDAR, Role, StackSpec
from k8s_ha.placement.place import PlacedNode, Placement
from k8s_ha.render import material as m
from k8s_ha.render.steps import HostFile, Step, secret_file
from k8s_ha.render.templating import read, render

CLIENT_PORT, PEER_PORT, METRICS_PORT = 2379, 2380, 2381

CONFIG_DIR = "/etc/etcd"
PKI_DIR = f"{CONFIG_DIR}/pki"
ENV_FILE = f"{CONFIG_DIR}/etcd.env"
STATE_FILE = f"{CONFIG_DIR}/cluster-state.env"  # written by etcd-member.sh, never rendered
DATA_DIR = "/var/lib/etcd"
UNIT_FILE = "/etc/systemd/system/etcd.service"
BACKUP_SERVICE_FILE = "/etc/systemd/system/etcd-backup.service"
BACKUP_TIMER_FILE = "/etc/systemd/system/etcd-backup.timer"
LIBEXEC = "/usr/local/libexec/k8s-ha"
BACKUP_SCRIPT = f"{LIBEXEC}/etcd-backup"
RESTORE_SCRIPT = f"{LIBEXEC}/etcd-restore"

CA_FILE = f"{PKI_DIR}/ca.crt"
SERVER_CERT, SERVER_KEY = f"{PKI_DIR}/server.crt", f"{PKI_DIR}/server.key"
PEER_CERT, PEER_KEY = f"{PKI_DIR}/peer.crt", f"{PKI_DIR}/peer.key"
HEALTHCHECK_CERT = f"{PKI_DIR}/healthcheck-client.crt"
HEALTHCHECK_KEY = f"{PKI_DIR}/healthcheck-client.key"

# The backend may use a quarter of the member's disk (the rest holds the WAL, raft snapshots and
# the local backups), at most the 8 GiB the etcd docs suggest as the practical ceiling and at
# least etcd's own 2 GiB default.
GIB = 1024**3
MAX_QUOTA_BYTES, MIN_QUOTA_BYTES = 8 * GIB, 2 * GIB
# How long the health step waits for every member to be healthy, and a member to join.
HEALTH_TIMEOUT_S = 120
BACKUP_RANDOM_DELAY = "2min"

# The spec reports bad values by config path; these re-checks keep the renderer safe on its own.
_SAFE_CALENDAR = SYSTEMD_CALENDAR
_SAFE_PATH = ABSOLUTE_PATH

ETCD_LIB = "etcd-lib.sh"  # the etcd_* helpers every etcd step uses


def _members(placement: Placement) -> list[PlacedNode]:
    members = placement.by_role(Role.ETCD)
    if not members:
        raise ValueError("the plan has no etcd members")
    return members


def client_url(node: PlacedNode) -> str:
    return f"https://{node.ip}:{CLIENT_PORT}"


def peer_url(node: PlacedNode) -> str:
    return f"https://{node.ip}:{PEER_PORT}"


def etcd_endpoints(placement: Placement) -> list[str]:
    """Client URLs of every member, in plan order: what kube-apiserver and etcdctl connect to."""
    return [client_url(n) for n in _members(placement)]


def initial_cluster(placement: Placement) -> str:
    """`name=peerURL,...` for the whole plan; a member joining a running cluster gets the live
    membership instead (see etcd-member.sh), because etcd compares the two."""
    return ",".join(f"{n.name}={peer_url(n)}" for n in _members(placement))


def cluster_token(spec: StackSpec) -> str:
    """Unique per cluster name, so members of two clusters can never join each other."""
    return f"k8s-ha-{spec.cluster.name}-etcd"


def backend_quota_bytes(node: PlacedNode) -> int:
    return max(MIN_QUOTA_BYTES, min(MAX_QUOTA_BYTES, node.size.disk_gib * GIB // 4))


def bin_dir(spec: StackSpec) -> str:
    """Debian's package installs into /usr/bin; a release tarball goes to /usr/local/bin."""
    return "/usr/bin" if spec.etcd.source.kind == "package" else "/usr/local/bin"


def release_url(spec: StackSpec) -> str:
    """The tarball to download: etcd.source.url, else mirrors.etcdRelease; `{version}` filled in."""
    template = spec.etcd.source.url or spec.mirrors.etcd_release
    return template.replace("{version}", spec.versions.etcd.removeprefix("v"))


def _member(placement: Placement, node: PlacedNode) -> PlacedNode:
    if node.role is not Role.ETCD or all(n.name != node.name for n in _members(placement)):
        raise ValueError(f"{node.name} is not an etcd member of this plan")
    return node


def etcd_env(spec: StackSpec, placement: Placement, node: PlacedNode) -> str:
    """The member's /etc/etcd/etcd.env (systemd EnvironmentFile syntax; plain KEY=value)."""
    node = _member(placement, node)
    return render(
        "etcd/etcd.env.j2",
        cluster=spec.cluster.name,
        name=node.name,
        ip=str(node.ip),
        data_dir=DATA_DIR,
        client_port=CLIENT_PORT,
        peer_port=PEER_PORT,
        metrics_port=METRICS_PORT,
        initial_cluster=initial_cluster(placement),
        token=cluster_token(spec),
        ca=CA_FILE,
        server_cert=SERVER_CERT,
        server_key=SERVER_KEY,
        peer_cert=PEER_CERT,
        peer_key=PEER_KEY,
        heartbeat_ms=spec.etcd.heartbeat_interval_ms,
        election_ms=spec.etcd.election_timeout_ms,
        pre_vote="true" if spec.etcd.pre_vote else "false",
        quota_bytes=backend_quota_bytes(node),
    )


def etcd_unit(spec: StackSpec) -> str:
    """/etc/systemd/system/etcd.service: replaces Debian's packaged unit of the same name."""
    return render(
        "etcd/etcd.service.j2",
        cluster=spec.cluster.name,
        env_file=ENV_FILE,
        state_file=STATE_FILE,
        data_dir=DATA_DIR,
        etcd=f"{bin_dir(spec)}/etcd",
    )


def _backup_settings(spec: StackSpec) -> tuple[str, str]:
    """The timer and directory end up in unit files: refuse values that could break out of them."""
    backup = spec.etcd.backup
    if not _SAFE_CALENDAR.match(backup.on_calendar):
        raise ValueError(f"etcd.backup.onCalendar {backup.on_calendar!r} is not a systemd calendar expression")
    if not _SAFE_PATH.match(backup.directory) or "/../" in f"{backup.directory}/":
        raise ValueError(f"etcd.backup.directory {backup.directory!r} must be an absolute path without spaces")
    return backup.on_calendar, backup.directory.rstrip("/") or "/"


def etcd_backup_service(spec: StackSpec, node: PlacedNode) -> str:
    _calendar, directory = _backup_settings(spec)
    return render(
        "etcd/etcd-backup.service.j2",
        name=node.name,
        script=BACKUP_SCRIPT,
        endpoint=client_url(node),
        ca=CA_FILE,
        cert=HEALTHCHECK_CERT,
        key=HEALTHCHECK_KEY,
        directory=directory,
        retain=spec.etcd.backup.retain,
        bin_dir=bin_dir(spec),
    )


def etcd_backup_timer(spec: StackSpec) -> str:
    calendar, _directory = _backup_settings(spec)
    return render("etcd/etcd-backup.timer.j2", on_calendar=calendar, random_delay=BACKUP_RANDOM_DELAY)


def _private_key(path: str, content: str) -> HostFile:
    """Readable only by the etcd user (the daemon and the backup job run as etcd)."""
    return secret_file(path, content, owner="etcd:etcd")


def _client_tls(material: m.Material) -> tuple[HostFile, ...]:
    """CA plus the healthcheck client identity: what every etcdctl call on a member uses."""
    return (
        HostFile(CA_FILE, material[m.ETCD_CA]),
        HostFile(HEALTHCHECK_CERT, material[m.ETCD_HEALTHCHECK_CERT]),
        _private_key(HEALTHCHECK_KEY, material[m.ETCD_HEALTHCHECK_KEY]),
    )


def _common_env(spec: StackSpec, placement: Placement) -> tuple[tuple[str, str], ...]:
    members = _members(placement)
    return (
        ("K8SHA_ETCD_ENDPOINTS", ",".join(etcd_endpoints(placement))),
        ("K8SHA_ETCD_NAMES", " ".join(n.name for n in members)),
        ("K8SHA_ETCD_BIN_DIR", bin_dir(spec)),
        ("K8SHA_ETCD_PKI", PKI_DIR),
    )


def etcd_member_step(spec: StackSpec, placement: Placement, node: PlacedNode, material: m.Material) -> Step:
    """Install, configure and start one member; its delete script takes it out of the cluster."""
    node = _member(placement, node)
    source = spec.etcd.source
    if source.kind == "tarball" and not source.sha256:
        raise ValueError("etcd.source.kind=tarball needs etcd.source.sha256: a download is never trusted unchecked")
    files = (
        HostFile(ENV_FILE, etcd_env(spec, placement, node)),
        HostFile(UNIT_FILE, etcd_unit(spec)),
        HostFile(SERVER_CERT, material[m.etcd_server_cert(node.name)]),
        _private_key(SERVER_KEY, material[m.etcd_server_key(node.name)]),
        HostFile(PEER_CERT, material[m.etcd_peer_cert(node.name)]),
        _private_key(PEER_KEY, material[m.etcd_peer_key(node.name)]),
        *_client_tls(material),
        HostFile(BACKUP_SCRIPT, read("etcd/etcd-backup.sh"), mode="0755"),
        HostFile(RESTORE_SCRIPT, read("scripts/etcd-restore.sh"), mode="0755"),
        HostFile(BACKUP_SERVICE_FILE, etcd_backup_service(spec, node)),
        HostFile(BACKUP_TIMER_FILE, etcd_backup_timer(spec)),
    )
    _calendar, backup_dir = _backup_settings(spec)
    env = (
        ("K8SHA_ETCD_NAME", node.name),
        ("K8SHA_ETCD_CLIENT_URL", client_url(node)),
        ("K8SHA_ETCD_PEER_URL", peer_url(node)),
        ("K8SHA_ETCD_DATA_DIR", DATA_DIR),
        ("K8SHA_ETCD_STATE_FILE", STATE_FILE),
        ("K8SHA_ETCD_BACKUP_DIR", backup_dir),
        ("K8SHA_ETCD_SOURCE", source.kind),
        ("K8SHA_ETCD_VERSION", spec.versions.etcd.removeprefix("v")),
        ("K8SHA_ETCD_URL", release_url(spec) if source.kind == "tarball" else ""),
        ("K8SHA_ETCD_SHA256", source.sha256 or ""),
        *_common_env(spec, placement),
    )
    return Step(
        name="etcd-member",
        host=node.name,
        script="etcd-member.sh",
        libs=(ETCD_LIB,),
        files=files,
        env=env,
        delete_script="etcd-remove.sh",
    )


def etcd_health_step(spec: StackSpec, placement: Placement, material: m.Material) -> Step:
    """Runs on the first member once every member step has run: waits for the whole cluster."""
    first = _members(placement)[0]
    return Step(
        name="etcd-health",
        host=first.name,
        script="etcd-health.sh",
        libs=(ETCD_LIB,),
        files=_client_tls(material),
        env=(("K8SHA_ETCD_HEALTH_TIMEOUT", str(HEALTH_TIMEOUT_S)), *_common_env(spec, placement)),
    )
