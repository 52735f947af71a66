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

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from k8s_ha.model import timers
from k8s_ha.model.artifacts import ArtifactSettings, ArtifactVersions, release_files
from k8s_ha.model.errors import Problem
from k8s_ha.model.spec import (
    ABSOLUTE_PATH,
    SYSTEMD_CALENDAR,
    ClusterSettings,
    EtcdBackup,
    EtcdRestore,
    EtcdSource,
    EtcdSpec,
    Role,
    StackSpec,
    Versions,
    unpinned_releases,
)
from k8s_ha.model.validation import PlainCheck, refuse_unknown_fields
from k8s_ha.placement.place import Placement
from k8s_ha.render import material as m
from k8s_ha.render.members import Member
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


@dataclass(frozen=True)
class EtcdMember:
    """A member's name and address, and its disk size, which bounds its backend quota."""

    name: str
    ip: ipaddress.IPv4Address
    disk_gib: int


@refuse_unknown_fields
@dataclass(frozen=True)
class EtcdSettings:
    """How the cluster runs: version and where it comes from, Raft timers, backups."""

    version: str
    cluster: str = "k8s-ha"
    source: EtcdSource = field(default_factory=EtcdSource)
    artifacts: ArtifactSettings = field(default_factory=ArtifactSettings)  # files mirror, private checksums
    heartbeat_interval_ms: int = timers.HEARTBEAT_INTERVAL_MS
    election_timeout_ms: int = timers.ELECTION_TIMEOUT_MS
    pre_vote: bool = True
    backup: EtcdBackup = field(default_factory=EtcdBackup)
    restore: EtcdRestore | None = None  # restore the cluster from this snapshot (once)

    def __post_init__(self) -> None:
        """The stack file's rules for the same fields (versions.etcd, cluster.name, etcd.*,
        artifacts, the pinned release), so a library user meets them at construction rather than
        inside an apply."""
        check = PlainCheck(type(self).__name__)
        typed = check.fields(Versions, {"etcd": self.version}, renamed={"etcd": "version"})
        check.fields(ClusterSettings, {"name": self.cluster}, renamed={"name": "cluster"})
        typed |= check.fields(EtcdSpec, {
            "source": self.source, "heartbeat_interval_ms": self.heartbeat_interval_ms,
            "election_timeout_ms": self.election_timeout_ms, "pre_vote": self.pre_vote, "backup": self.backup,
            "restore": self.restore,
        })
        typed |= check.fields(StackSpec, {"artifacts": self.artifacts})
        check.keep(self, typed)
        supported = not any(p.path == "version" for p in check.problems)  # else reported as that
        if supported and {"artifacts", "source"} <= typed.keys() and self.source.kind == "release":
            found = unpinned_releases(ArtifactVersions(etcd=self.version), self.artifacts, ["etcd"])
            check.add(Problem("version", p.message) for p in found)
        check.done()


@dataclass(frozen=True)
class EtcdConfig:
    """The members in plan order (the first runs the health gate) and the cluster's settings."""

    members: tuple[EtcdMember, ...]
    settings: EtcdSettings

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("an etcd cluster needs members")

    def member(self, name: str) -> EtcdMember:
        for member in self.members:
            if member.name == name:
                return member
        raise ValueError(f"{name} is not an etcd member of this cluster")


def etcd_config(spec: StackSpec, placement: Placement) -> EtcdConfig:
    """The stack's etcd layer: its members as placed, versions, mirrors and tuning."""
    return EtcdConfig(
        members=tuple(EtcdMember(n.name, n.ip, n.size.disk_gib) for n in placement.by_role(Role.ETCD)),
        settings=etcd_settings(spec),
    )


def etcd_settings(spec: StackSpec) -> EtcdSettings:
    return EtcdSettings(
        version=spec.versions.etcd,
        cluster=spec.cluster.name,
        source=spec.etcd.source,
        artifacts=spec.artifacts,
        heartbeat_interval_ms=spec.etcd.heartbeat_interval_ms,
        election_timeout_ms=spec.etcd.election_timeout_ms,
        pre_vote=spec.etcd.pre_vote,
        backup=spec.etcd.backup,
        restore=spec.etcd.restore,
    )


def client_url(node: Member) -> str:
    return f"https://{node.ip}:{CLIENT_PORT}"


def peer_url(node: Member) -> str:
    return f"https://{node.ip}:{PEER_PORT}"


def etcd_endpoints(members: Sequence[Member]) -> list[str]:
    """Client URLs of every member, in plan order: what kube-apiserver and etcdctl connect to."""
    return [client_url(n) for n in members]


def initial_cluster(config: EtcdConfig) -> str:
    """`name=peerURL,...` for the whole plan; a member joining a running cluster gets the live
    membership instead (see etcd-member.sh), because etcd compares the two."""
    return ",".join(f"{n.name}={peer_url(n)}" for n in config.members)


def cluster_token(config: EtcdConfig) -> str:
    """Unique per cluster name, so members of two clusters can never join each other."""
    return f"k8s-ha-{config.settings.cluster}-etcd"


def backend_quota_bytes(member: EtcdMember) -> int:
    return max(MIN_QUOTA_BYTES, min(MAX_QUOTA_BYTES, member.disk_gib * GIB // 4))


def bin_dir(config: EtcdConfig) -> str:
    """Debian's package installs into /usr/bin; a release tarball goes to /usr/local/bin."""
    return "/usr/bin" if config.settings.source.kind == "package" else "/usr/local/bin"


def tarball(settings: EtcdSettings) -> tuple[str, str] | None:
    """(url, sha256) of the tarball to install, None for the distribution's package. A release
    source is the upstream tarball of `version`, pinned in the checksum table, through the files
    mirror; a tarball source is the stack's own URL (`{version}` filled in) and checksum."""
    source, version = settings.source, settings.version.removeprefix("v")
    if source.kind == "package":
        return None
    if source.kind == "tarball":
        if not source.url or not source.sha256:
            raise ValueError("etcd.source.kind=tarball needs a url and its sha256: no download is trusted unchecked")
        return source.url.replace("{version}", version), source.sha256
    (pinned,) = release_files(ArtifactVersions(etcd=version), settings.artifacts, only=frozenset({"etcd"}))
    return pinned.url, pinned.sha256


def release_url(config: EtcdConfig) -> str:
    pinned = tarball(config.settings)
    return pinned[0] if pinned else ""


def etcd_env(config: EtcdConfig, node: Member) -> str:
    """The member's /etc/etcd/etcd.env (systemd EnvironmentFile syntax; plain KEY=value)."""
    member = config.member(node.name)
    return render(
        "etcd/etcd.env.j2",
        cluster=config.settings.cluster,
        name=member.name,
        ip=str(member.ip),
        data_dir=DATA_DIR,
        client_port=CLIENT_PORT,
        peer_port=PEER_PORT,
        metrics_port=METRICS_PORT,
        initial_cluster=initial_cluster(config),
        token=cluster_token(config),
        ca=CA_FILE,
        server_cert=SERVER_CERT,
        server_key=SERVER_KEY,
        peer_cert=PEER_CERT,
        peer_key=PEER_KEY,
        heartbeat_ms=config.settings.heartbeat_interval_ms,
        election_ms=config.settings.election_timeout_ms,
        pre_vote="true" if config.settings.pre_vote else "false",
        quota_bytes=backend_quota_bytes(member),
    )


def etcd_unit(config: EtcdConfig) -> str:
    """/etc/systemd/system/etcd.service: replaces Debian's packaged unit of the same name."""
    return render(
        "etcd/etcd.service.j2",
        cluster=config.settings.cluster,
        env_file=ENV_FILE,
        state_file=STATE_FILE,
        data_dir=DATA_DIR,
        etcd=f"{bin_dir(config)}/etcd",
    )


def _backup_settings(config: EtcdConfig) -> tuple[str, str]:
    """The timer and directory end up in unit files: refuse values that could break out of them."""
    backup = config.settings.backup
    if not _SAFE_CALENDAR.match(backup.on_calendar):
        raise ValueError(f"etcd.backup.onCalendar {backup.on_calendar!r} is not a systemd calendar expression")
    if not _SAFE_PATH.match(backup.directory) or "/../" in f"{backup.directory}/":
        raise ValueError(f"etcd.backup.directory {backup.directory!r} must be an absolute path without spaces")
    return backup.on_calendar, backup.directory.rstrip("/") or "/"


def etcd_backup_service(config: EtcdConfig, node: Member) -> str:
    _calendar, directory = _backup_settings(config)
    return render(
        "etcd/etcd-backup.service.j2",
        name=node.name,
        script=BACKUP_SCRIPT,
        endpoint=client_url(node),
        ca=CA_FILE,
        cert=HEALTHCHECK_CERT,
        key=HEALTHCHECK_KEY,
        directory=directory,
        retain=config.settings.backup.retain,
        bin_dir=bin_dir(config),
    )


def etcd_backup_timer(config: EtcdConfig) -> str:
    calendar, _directory = _backup_settings(config)
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


def _common_env(config: EtcdConfig) -> tuple[tuple[str, str], ...]:
    return (
        ("K8SHA_ETCD_ENDPOINTS", ",".join(etcd_endpoints(config.members))),
        ("K8SHA_ETCD_NAMES", " ".join(n.name for n in config.members)),
        ("K8SHA_ETCD_BIN_DIR", bin_dir(config)),
        ("K8SHA_ETCD_PKI", PKI_DIR),
    )


def etcd_member_step(config: EtcdConfig, node: Member, material: m.Material) -> Step:
    """Install, configure and start one member; its delete script takes it out of the cluster."""
    node = config.member(node.name)
    pinned = tarball(config.settings)
    files = (
        HostFile(ENV_FILE, etcd_env(config, node)),
        HostFile(UNIT_FILE, etcd_unit(config)),
        HostFile(SERVER_CERT, material[m.etcd_server_cert(node.name)]),
        _private_key(SERVER_KEY, material[m.etcd_server_key(node.name)]),
        HostFile(PEER_CERT, material[m.etcd_peer_cert(node.name)]),
        _private_key(PEER_KEY, material[m.etcd_peer_key(node.name)]),
        *_client_tls(material),
        HostFile(BACKUP_SCRIPT, read("etcd/etcd-backup.sh"), mode="0755"),
        HostFile(RESTORE_SCRIPT, read("scripts/etcd-restore.sh"), mode="0755"),
        HostFile(BACKUP_SERVICE_FILE, etcd_backup_service(config, node)),
        HostFile(BACKUP_TIMER_FILE, etcd_backup_timer(config)),
    )
    _calendar, backup_dir = _backup_settings(config)
    env = (
        ("K8SHA_ETCD_NAME", node.name),
        ("K8SHA_ETCD_CLIENT_URL", client_url(node)),
        ("K8SHA_ETCD_PEER_URL", peer_url(node)),
        ("K8SHA_ETCD_DATA_DIR", DATA_DIR),
        ("K8SHA_ETCD_STATE_FILE", STATE_FILE),
        ("K8SHA_ETCD_BACKUP_DIR", backup_dir),
        ("K8SHA_ETCD_SOURCE", "tarball" if pinned else "package"),
        ("K8SHA_ETCD_VERSION", config.settings.version.removeprefix("v")),
        ("K8SHA_ETCD_URL", pinned[0] if pinned else ""),
        ("K8SHA_ETCD_SHA256", pinned[1] if pinned else ""),
        *_common_env(config),
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


def etcd_health_step(config: EtcdConfig, material: m.Material) -> Step:
    """Runs on the first member once every member step has run: waits for the whole cluster."""
    first = config.members[0]
    return Step(
        name="etcd-health",
        host=first.name,
        script="etcd-health.sh",
        libs=(ETCD_LIB,),
        files=_client_tls(material),
        env=(("K8SHA_ETCD_HEALTH_TIMEOUT", str(HEALTH_TIMEOUT_S)), *_common_env(config)),
    )


# The key a restored cluster carries: the sha256 of the snapshot it was restored from.
RESTORE_MARK_KEY = "/k8s-ha/restored-from-snapshot"


def _restore(config: EtcdConfig) -> EtcdRestore:
    if config.settings.restore is None:
        raise ValueError("EtcdSettings.restore is not set: there is no snapshot to restore from")
    return config.settings.restore


def etcd_restore_step(config: EtcdConfig, node: Member, material: m.Material) -> Step:
    """etcd.restore on one member (all run at once): the snapshot fetched and checked against its
    sha256, then the member's etcd-restore; once per snapshot, and never on a member that joined
    the cluster after its restore (docs/etcd.md, Restore)."""
    restore = _restore(config)
    return Step(
        name="etcd-restore",
        host=config.member(node.name).name,
        script="etcd-restore-step.sh",
        libs=(ETCD_LIB,),
        files=_client_tls(material),
        env=(("K8SHA_ETCD_NAME", node.name), ("K8SHA_RESTORE_URL", restore.url),
             ("K8SHA_RESTORE_SHA256", restore.sha256), ("K8SHA_ETCD_MARK_KEY", RESTORE_MARK_KEY),
             *_common_env(config)),
    )


def etcd_restored_step(config: EtcdConfig, material: m.Material) -> Step:
    """After every member's restore: the health gate again, then the restore's mark in the
    restored cluster (so that a member added later never restores it again)."""
    health = etcd_health_step(config, material)
    mark = (("K8SHA_ETCD_MARK_KEY", RESTORE_MARK_KEY), ("K8SHA_ETCD_MARK_VALUE", _restore(config).sha256))
    return Step(name="etcd-restored", host=health.host, script=health.script, libs=health.libs,
                files=health.files, env=(*health.env, *mark))
