"""Harbor on its own host: harbor.yml, the TLS files, the systemd unit, and the install step.

What is decided where:
- harbor.yml is built as a `HarborYml` (a strict model of exactly the keys k8s-ha sets, in the
  format of the pinned Harbor version's harbor.yml.tmpl) and rendered from it, so a typo or a
  wrong type in the template fails the render tier instead of Harbor's `prepare` on the host.
- Everything comes from a `HarborConfig` of plain values (`harbor_config(spec, placement)`
  derives it from a stack; `HarborRegistry` takes one directly when used on its own).
- Harbor is named by the same host the nodes use (`harbor_registry_host`): it is the `hostname`
  in harbor.yml (Harbor's token service realm), the URL the step checks, and the provider's URL.
- The step trusts exactly what the nodes trust (the certificate Harbor serves, as in
  `registry_host_files`), so a passing health check also proves the nodes' trust works.
- The proxy-cache projects are the ones `HARBOR_PROXY_PROJECTS` (the containerd side) names;
  `proxy_cache_projects` adds the Harbor registry type and endpoint of each upstream.
See docs/harbor.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from k8s_ha.model.artifacts import HARBOR_PROXY_PROJECTS
from k8s_ha.model.errors import Problem
from k8s_ha.model.spec import ClusterSettings, HarborSpec, Mirrors, StackSpec, Versions, harbor_download_problem
from k8s_ha.model.validation import PlainCheck, refuse_unknown_fields
from k8s_ha.placement.place import Placement
from k8s_ha.render import material as m
from k8s_ha.render.kubernetes import harbor_registry_host
from k8s_ha.render.members import Member
from k8s_ha.render.steps import HostFile, Step, secret_file
from k8s_ha.render.templating import read, render

CONFIG_DIR = "/etc/harbor"
CONFIG_FILE = f"{CONFIG_DIR}/harbor.yml"
PKI_DIR = f"{CONFIG_DIR}/pki"
CERT_FILE, KEY_FILE, TRUST_FILE = f"{PKI_DIR}/tls.crt", f"{PKI_DIR}/tls.key", f"{PKI_DIR}/ca.crt"
DATA_VOLUME = "/data"  # the Harbor VM's data disk (k8s_ha/render/cloudinit.py HARBOR_DATA_MOUNT)
INSTALL_ROOT = "/opt"
UNIT_FILE = "/etc/systemd/system/harbor.service"
DOCKER_DROPIN = "/etc/systemd/system/docker.service.d/k8s-ha-harbor-data.conf"
COMPOSE_WRAPPER = "/usr/local/libexec/k8s-ha/harbor-compose"
LOG_DIR = "/var/log/harbor"
HTTPS_PORT = 443
# First start initialises the database and runs its migrations: a few minutes on a slow disk.
READY_TIMEOUT_S = 600
# harbor.yml's format is that of harbor.yml.tmpl from 2.10 on (the keys set here are unchanged up
# to 2.15); older releases lack keys written here and are refused with this message.
MINIMUM_VERSION = (2, 10)
# Projects the cluster's robot account may pull from besides the proxy caches: Harbor's default
# project, where docs/harbor.md pushes images.
ROBOT_PROJECTS_EXTRA = ("library",)

# Harbor's registry adapter for each upstream the containerd side mirrors: (Harbor provider name
# as the goharbor provider spells it, endpoint). Docker Hub's adapter takes the hub's own URL and
# talks to registry-1.docker.io itself; the others are plain OCI registries or Quay.
HARBOR_UPSTREAMS: dict[str, tuple[str, str]] = {
    "docker.io": ("docker-hub", "https://hub.docker.com"),
    "registry.k8s.io": ("docker-registry", "https://registry.k8s.io"),
    "quay.io": ("quay", "https://quay.io"),
}


# ---- the strict model of harbor.yml ------------------------------------------------------------


class _Strict(BaseModel):
    """Exactly these keys, exactly these types: no coercion ("80" is not a port), nothing extra."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


Port = Annotated[int, Field(ge=1, le=65535)]
AbsolutePath = Annotated[str, Field(pattern=r"^/[^\s:]*$")]
Duration = Annotated[str, Field(pattern=r"^[0-9]+(ns|us|ms|s|m|h)$")]
Size = Annotated[str, Field(pattern=r"^[0-9]+[kMG]?$")]
UPSTREAM_DEFAULT_PASSWORDS = frozenset({"Harbor12345", "root123"})


def password_problem(value: str) -> str | None:
    """What harbor.yml refuses in a password; the Args check a password given as text by it too."""
    if len(value) < 8:
        return "must be at least 8 characters"
    if value in UPSTREAM_DEFAULT_PASSWORDS:
        return "is Harbor's published default password"
    return None


def _password(value: str) -> str:
    if (problem := password_problem(value)) is not None:
        raise ValueError(problem)
    return value


class HttpSection(_Strict):
    port: Port


class HttpsSection(_Strict):
    port: Port
    certificate: AbsolutePath
    private_key: AbsolutePath


class DatabaseSection(_Strict):
    password: str
    max_idle_conns: Annotated[int, Field(ge=0)]
    max_open_conns: Annotated[int, Field(ge=0)]
    conn_max_lifetime: Duration
    conn_max_idle_time: Annotated[int, Field(ge=0)]

    _check_password = field_validator("password")(_password)


class JobserviceSection(_Strict):
    max_job_workers: Annotated[int, Field(ge=1)]
    job_loggers: Annotated[list[Literal["STD_OUTPUT", "FILE", "DB"]], Field(min_length=1)]
    logger_sweeper_duration: Annotated[int, Field(ge=1)]


class NotificationSection(_Strict):
    webhook_job_max_retry: Annotated[int, Field(ge=0)]
    webhook_job_http_client_timeout: Annotated[int, Field(ge=1)]


class LocalLogSection(_Strict):
    rotate_count: Annotated[int, Field(ge=0)]
    rotate_size: Size
    location: AbsolutePath


class LogSection(_Strict):
    level: Literal["debug", "info", "warning", "error", "fatal"]
    local: LocalLogSection


class UploadPurgingSection(_Strict):
    enabled: bool
    age: Duration
    interval: Duration
    dryrun: bool


class CacheSection(_Strict):
    enabled: bool
    expire_hours: Annotated[int, Field(ge=1)]


class HarborYml(_Strict):
    """The harbor.yml k8s-ha writes; `version` is the file's `_version` (the format, x.y.0)."""

    hostname: str
    http: HttpSection
    https: HttpsSection
    harbor_admin_password: str
    database: DatabaseSection
    data_volume: AbsolutePath
    jobservice: JobserviceSection
    notification: NotificationSection
    log: LogSection
    upload_purging: UploadPurgingSection
    cache: CacheSection
    version: Annotated[str, Field(alias="_version", pattern=r"^2\.[0-9]+\.0$")]

    _check_admin_password = field_validator("harbor_admin_password")(_password)

    @field_validator("hostname")
    @classmethod
    def _reachable_name(cls, value: str) -> str:
        # Harbor's prepare refuses these too: clients could not reach a loopback name.
        if value in ("127.0.0.1", "localhost", "reg.mydomain.com") or not re.fullmatch(r"[A-Za-z0-9.-]+", value):
            raise ValueError(f"{value!r} is not a name or address clients can reach Harbor at")
        return value


# ---- the plain values the renderers take -----------------------------------------------------------


@refuse_unknown_fields
@dataclass(frozen=True, kw_only=True)
class HarborConfig:
    """Harbor on one host: the name clients reach it by (hostname or address, as the nodes use it),
    its release and where the offline installer comes from, and whether it proxies the upstreams.
    The installer's sha256 is required: the step refuses to install an unchecked download."""

    host: str
    installer_sha256: str
    version: str = field(default_factory=lambda: Versions().harbor)
    installer_url_template: str = field(default_factory=lambda: Mirrors().harbor_installer)  # {version}
    proxy_cache: bool = True
    cluster: str = "k8s-ha"  # names the robot account

    def __post_init__(self) -> None:
        """The stack file's rules for the same fields (harbor.hostname, versions.harbor, the
        installer's mirror and checksum, cluster.name), so a library user meets them here rather
        than in a failed step on the Harbor host."""
        check = PlainCheck(type(self).__name__)
        typed = check.fields(HarborSpec, {"hostname": self.host, "proxy_cache": self.proxy_cache},
                             renamed={"hostname": "host"})
        typed |= check.fields(Versions, {"harbor": self.version}, renamed={"harbor": "version"})
        typed |= check.fields(Mirrors, {"harbor_installer": self.installer_url_template,
                                        "harbor_installer_sha256": self.installer_sha256},
                              renamed={"harbor_installer": "installer_url_template",
                                       "harbor_installer_sha256": "installer_sha256"})
        typed |= check.fields(ClusterSettings, {"name": self.cluster}, renamed={"name": "cluster"})
        check.keep(self, typed)
        missing = harbor_download_problem(self.installer_sha256)
        check.add([Problem("installerSha256", missing)] if missing else [])
        check.done()


def harbor_config(spec: StackSpec, placement: Placement) -> HarborConfig:
    """The stack's Harbor; ValueError when the stack has none."""
    host = harbor_registry_host(spec, placement)
    if host is None:
        raise ValueError("Harbor is not enabled in this stack (harbor.enabled with a harbor.node)")
    sha256 = spec.mirrors.harbor_installer_sha256
    if sha256 is None:  # a validated stack has it (the same rule)
        raise ValueError(f"mirrors.harborInstallerSha256: {harbor_download_problem(sha256)}")
    return HarborConfig(
        host=host,
        version=spec.versions.harbor,
        installer_url_template=spec.mirrors.harbor_installer,
        installer_sha256=sha256,
        proxy_cache=spec.harbor.proxy_cache,
        cluster=spec.cluster.name,
    )


# ---- derived values -------------------------------------------------------------------------------


def harbor_version(config: HarborConfig) -> str:
    """The release, without a leading v (mirrors.harborInstaller's {version})."""
    return config.version.removeprefix("v")


def config_version(config: HarborConfig) -> str:
    """harbor.yml's `_version`: Harbor's `prepare` refuses a file of another minor's format."""
    match = re.fullmatch(r"(\d+)\.(\d+)\.\d+", harbor_version(config))
    if match is None:  # the spec's own check rejects this first
        raise ValueError(f"versions.harbor {config.version!r} is not a version such as 2.12.2")
    major, minor = int(match[1]), int(match[2])
    if (major, minor) < MINIMUM_VERSION:
        raise ValueError(
            f"versions.harbor {config.version} is older than the harbor.yml format k8s-ha writes "
            f"({MINIMUM_VERSION[0]}.{MINIMUM_VERSION[1]} or newer)"
        )
    return f"{major}.{minor}.0"


def install_dir(config: HarborConfig) -> str:
    return f"{INSTALL_ROOT}/harbor-{harbor_version(config)}"


def installer_url(config: HarborConfig) -> str:
    return config.installer_url_template.format(version=harbor_version(config))


def harbor_url(config: HarborConfig) -> str:
    return f"https://{config.host}"


def served_certificate(material: m.Material) -> str:
    """What Harbor serves: the certificate the Kubernetes CA issued, or harbor.certificate (the
    PKI component passes it through under the same name). The nodes trust exactly this."""
    return material[m.HARBOR_CERT]


@dataclass(frozen=True)
class ProxyProject:
    """One Harbor proxy-cache project and the upstream registry endpoint behind it."""

    registry: str  # as image names spell it, e.g. docker.io
    project: str  # the Harbor project the containerd mirror points at
    provider_name: str  # Harbor's registry type, as the goharbor provider names it
    endpoint: str

    @property
    def endpoint_name(self) -> str:
        return f"{self.project}-upstream"


def proxy_cache_projects(config: HarborConfig) -> list[ProxyProject]:
    """The projects the nodes' containerd mirrors expect, in HARBOR_PROXY_PROJECTS' order."""
    if not config.proxy_cache:
        return []
    missing = sorted(set(HARBOR_PROXY_PROJECTS) - set(HARBOR_UPSTREAMS))
    if missing:
        raise ValueError(f"no Harbor registry adapter is known for {', '.join(missing)} (HARBOR_UPSTREAMS)")
    return [
        ProxyProject(registry, project, *HARBOR_UPSTREAMS[registry])
        for registry, (project, _upstream) in HARBOR_PROXY_PROJECTS.items()
    ]


def robot_projects(config: HarborConfig) -> list[str]:
    """Projects the cluster's robot account may pull from: the proxy caches and `library`."""
    return [p.project for p in proxy_cache_projects(config)] + list(ROBOT_PROJECTS_EXTRA)


# ---- files ---------------------------------------------------------------------------------------


def harbor_yml_model(config: HarborConfig, material: m.Material) -> HarborYml:
    return HarborYml(
        hostname=config.host,
        http=HttpSection(port=80),
        https=HttpsSection(port=HTTPS_PORT, certificate=CERT_FILE, private_key=KEY_FILE),
        harbor_admin_password=material[m.HARBOR_ADMIN_PASSWORD],
        database=DatabaseSection(
            password=material[m.HARBOR_DB_PASSWORD],
            max_idle_conns=100,
            max_open_conns=900,
            conn_max_lifetime="5m",
            conn_max_idle_time=0,
        ),
        data_volume=DATA_VOLUME,
        jobservice=JobserviceSection(max_job_workers=10, job_loggers=["STD_OUTPUT", "FILE"], logger_sweeper_duration=1),
        notification=NotificationSection(webhook_job_max_retry=3, webhook_job_http_client_timeout=3),
        log=LogSection(level="info", local=LocalLogSection(rotate_count=50, rotate_size="200M", location=LOG_DIR)),
        upload_purging=UploadPurgingSection(enabled=True, age="168h", interval="24h", dryrun=False),
        cache=CacheSection(enabled=False, expire_hours=24),
        version=config_version(config),
    )


def _q(value: object) -> str:
    """A double-quoted YAML scalar (JSON string syntax is valid YAML)."""
    return json.dumps(str(value))


def harbor_yml(config: HarborConfig, node: Member, material: m.Material) -> str:
    return render(
        "harbor/harbor.yml.j2",
        q=_q,
        c=harbor_yml_model(config, material),
        node=node.name,
        harbor_version=harbor_version(config),
        config_file=CONFIG_FILE,
        install_dir=install_dir(config),
    )


def harbor_unit(config: HarborConfig) -> str:
    return render(
        "harbor/harbor.service.j2",
        harbor_version=harbor_version(config),
        install_dir=install_dir(config),
        compose=COMPOSE_WRAPPER,
        data=DATA_VOLUME,
        timeout_s=READY_TIMEOUT_S,
    )


def harbor_step(config: HarborConfig, node: Member, material: m.Material) -> Step:
    """Docker + Compose, the offline installer (sha256-checked), harbor.yml and TLS files,
    `prepare` + `compose up` when they changed, harbor.service; delete: `compose down`, /data kept."""
    certificate = served_certificate(material)
    files = (
        secret_file(CONFIG_FILE, harbor_yml(config, node, material)),
        HostFile(CERT_FILE, certificate),
        secret_file(KEY_FILE, material[m.HARBOR_KEY]),
        HostFile(TRUST_FILE, certificate),
        HostFile(COMPOSE_WRAPPER, read("harbor/harbor-compose.sh"), mode="0755"),
        HostFile(UNIT_FILE, harbor_unit(config)),
        HostFile(DOCKER_DROPIN, render("harbor/docker-data.conf.j2", data=DATA_VOLUME)),
    )
    return Step(
        name="harbor",
        host=node.name,
        script="harbor-install.sh",
        files=files,
        env=(
            ("K8SHA_HARBOR_VERSION", harbor_version(config)),
            ("K8SHA_HARBOR_URL", installer_url(config)),
            ("K8SHA_HARBOR_SHA256", config.installer_sha256 or ""),
            ("K8SHA_HARBOR_DIR", install_dir(config)),
            ("K8SHA_HARBOR_HOST", config.host),
            ("K8SHA_HARBOR_CONFIG", CONFIG_FILE),
            ("K8SHA_HARBOR_PKI", PKI_DIR),
            ("K8SHA_HARBOR_DATA", DATA_VOLUME),
            ("K8SHA_HARBOR_COMPOSE", COMPOSE_WRAPPER),
            ("K8SHA_HARBOR_WAIT_S", str(READY_TIMEOUT_S)),
        ),
        delete_script="harbor-remove.sh",
    )
