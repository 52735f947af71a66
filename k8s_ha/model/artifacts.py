"""Every release file and image a node needs, where it comes from, and the sha256 it must have.

The way Kubespray's download role does it: each file is named by its upstream URL in the
release's real layout, pinned by a sha256 from checksums.py (upstream facts) or from the stack's
own table (`artifacts.checksums`, for a private build), and every URL is one setting away from a
mirror: with `artifacts.filesRepo` set, `https://<host>/<path>` becomes `<filesRepo>/<host>/<path>`
(Kubespray's files_repo convention), which is also how an offline bundle lays its files out.
Images keep the names kubeadm pulls given `mirrors.imageRepository`; `artifacts.imageRegistry`
is the registry mirror containerd pulls every image through.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from k8s_ha.model import versions
from k8s_ha.model.checksums import RELEASE_SHA256
from k8s_ha.model.validation import Check, Model, rule

ARCH = "amd64"
SHA256 = re.compile(r"[0-9a-f]{64}")
REGISTRY_HOST = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?")
MAX_CHECKSUM_ENTRIES = 1000
IMAGE_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
MAX_IMAGE_DIGESTS = 200

# Add-on images that are not kubeadm's; the tags of the releases this project deploys.
FLANNEL_REPOSITORY = "ghcr.io/flannel-io"
FLANNEL_TAG = "v0.28.4"
FLANNEL_CNI_PLUGIN_TAG = "v1.9.0-flannel1"
CALICO_TAG = "v3.31.3"
METRICS_SERVER_TAG = "v0.8.0"
KUBEADM_IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
DEFAULT_IMAGE_REPOSITORY = "registry.k8s.io"

# Harbor proxy-cache projects that the nodes pull through when Harbor is enabled with
# proxyCache: registry -> (Harbor project name, the upstream registry's API endpoint). The Harbor
# component creates these projects (type "proxy cache") with the same names.
HARBOR_PROXY_PROJECTS: dict[str, tuple[str, str]] = {
    "docker.io": ("dockerhub", "https://registry-1.docker.io"),
    "registry.k8s.io": ("k8s", "https://registry.k8s.io"),
    "quay.io": ("quay", "https://quay.io"),
}
RegistryPrecedence = Literal["mirror", "harbor"]


class ArtifactError(ValueError):
    """A file or image that cannot be pinned; the message says which one and what to do."""


def _files_repo(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{value!r} is not a base URL such as http://10.0.0.5:8080/files")
    return value.rstrip("/")


def _registry(value: str | None) -> str | None:
    if value is not None and not REGISTRY_HOST.fullmatch(value):
        raise ValueError(f"{value!r} is not a registry host such as 10.0.0.5:5000")
    return value


def _checksums(table: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    entries = sum(len(v) for v in table.values())
    if entries > MAX_CHECKSUM_ENTRIES:
        raise ValueError(f"{entries} entries; at most {MAX_CHECKSUM_ENTRIES}")
    for component, by_version in table.items():
        if component not in COMPONENTS:
            raise ValueError(f"unknown component {component!r}; one of {sorted(COMPONENTS)}")
        for version, digest in by_version.items():
            if versions.parse(version) is None or not SHA256.fullmatch(digest):
                raise ValueError(f"{component} {version!r}: {digest!r} is not a version and a lowercase sha256")
    return table


def _image_digests(table: dict[str, str]) -> dict[str, str]:
    if len(table) > MAX_IMAGE_DIGESTS:
        raise ValueError(f"{len(table)} entries; at most {MAX_IMAGE_DIGESTS}")
    for ref, digest in table.items():
        if not IMAGE_DIGEST.fullmatch(digest):
            raise ValueError(f"{ref}: {digest!r} is not a digest such as sha256:<64 lowercase hex digits>")
    return table


def _checked(check: Callable[[Any], Any]) -> Check:
    """A validator that raises ValueError as a field check: its message at the field's path."""
    def message(value: Any) -> str | None:
        try:
            check(value)
        except ValueError as error:
            return str(error)
        return None
    return Check(message)


def _pem_certificate(value: str | None) -> str | None:
    if value is not None and "-----BEGIN CERTIFICATE-----" not in value:
        raise ValueError("must be a PEM certificate (-----BEGIN CERTIFICATE-----)")
    return value


class ArtifactSettings(Model):
    """The stack's `artifacts:` block: the two mirror settings and an optional private checksum table."""

    files_repo: Annotated[str | None, AfterValidator(_files_repo)] = None
    image_registry: Annotated[str | None, _checked(_registry)] = None
    # How nodes reach the mirror: HTTPS (verified with this CA, else the system roots) unless the
    # stack says plain HTTP, which an offline bundle served from a laptop usually is.
    image_registry_ca: Annotated[str | None, _checked(_pem_certificate)] = None
    image_registry_plain_http: bool = False
    # Who serves a registry that both the mirror and Harbor's proxy cache could: unset, a stack
    # with both is refused (neither may win silently).
    image_registry_precedence: RegistryPrecedence | None = None
    checksums: Annotated[dict[str, dict[str, str]], _checked(_checksums)] = Field(default_factory=dict)
    # image reference as the cluster names it (registry/path:tag) -> the manifest digest it must
    # have (`bundle` writes this table for the images it holds): the nodes run exactly that.
    image_digests: Annotated[dict[str, str], _checked(_image_digests)] = Field(default_factory=dict)

    @rule("image_registry_ca", "image_registry_plain_http")
    def one_transport(self) -> Iterator[tuple[str, str]]:
        if self.image_registry_ca is not None and self.image_registry_plain_http:
            yield "imageRegistryCa", ("imageRegistryPlainHttp is true: a plain HTTP mirror has no certificate; "
                                      "drop one of them")

    @rule("image_registry", "image_registry_ca", "image_registry_plain_http", "image_registry_precedence")
    def describes_a_mirror(self) -> Iterator[tuple[str, str]]:
        if self.image_registry is not None:
            return
        for name, value in (("imageRegistryCa", self.image_registry_ca is not None),
                            ("imageRegistryPlainHttp", self.image_registry_plain_http),
                            ("imageRegistryPrecedence", self.image_registry_precedence is not None)):
            if value:
                yield name, "describes artifacts.imageRegistry, which is not set"


@dataclass(frozen=True)
class RegistryRoutes:
    """Which upstream registries the nodes pull through the mirror and which through Harbor's proxy
    cache; `contested` are served by both with no `imageRegistryPrecedence` to decide."""

    mirror: frozenset[str]
    harbor: frozenset[str]
    contested: tuple[str, ...] = ()


def registry_routes(settings: ArtifactSettings, mirrored: Iterable[str], harbor_proxy: bool) -> RegistryRoutes:
    """One rule for `validate` and the render: the mirror serves the registries its images come
    from, Harbor's proxy cache the registries it caches, and a registry both could serve goes to
    the side `imageRegistryPrecedence` names."""
    mine = frozenset(mirrored) if settings.image_registry is not None else frozenset()
    proxied = frozenset(HARBOR_PROXY_PROJECTS) if harbor_proxy else frozenset()
    both = mine & proxied
    if settings.image_registry_precedence == "mirror":
        return RegistryRoutes(mine, proxied - both)
    if settings.image_registry_precedence == "harbor":
        return RegistryRoutes(mine - both, proxied)
    return RegistryRoutes(mine - both, proxied - both, tuple(sorted(both)))


def contested_message(routes: RegistryRoutes, mirror: str | None) -> str:
    """What `validate` and the render say about registries both sides would serve."""
    return (f"images from {list(routes.contested)} would come both through Harbor's proxy cache "
            f"(harbor.proxyCache) and from the image registry mirror {mirror} (artifacts.imageRegistry): "
            "say which wins with artifacts.imageRegistryPrecedence: mirror (the mirror serves the "
            "registries it carries, Harbor proxies the others) or harbor (Harbor proxies every registry "
            "it caches, the mirror serves the rest)")


@dataclass(frozen=True)
class ArtifactVersions:
    """The versions that decide which files and images a cluster needs."""

    kubernetes: str = versions.DEFAULT_KUBERNETES
    containerd: str = versions.DEFAULT_CONTAINERD
    runc: str = versions.DEFAULT_RUNC
    cni_plugins: str = versions.DEFAULT_CNI_PLUGINS
    crictl: str = versions.DEFAULT_CRICTL
    etcd: str = versions.DEFAULT_ETCD
    cni: Literal["calico", "flannel"] = "calico"
    metrics_server: bool = False
    image_repository: str = DEFAULT_IMAGE_REPOSITORY

    @property
    def minor(self) -> int:
        parsed = versions.parse(self.kubernetes)
        if parsed is None:
            raise ArtifactError(f"Kubernetes version {self.kubernetes!r} is not MAJOR.MINOR.PATCH")
        return parsed[1]


@dataclass(frozen=True)
class ReleaseFile:
    """One release file: what it is, where upstream publishes it, where nodes fetch it, its digest."""

    component: str
    version: str
    upstream: str
    url: str
    sha256: str

    @property
    def name(self) -> str:
        return self.upstream.rsplit("/", 1)[1]

    @property
    def path(self) -> str:
        """`<host>/<path>`: its place under a files mirror and in a bundle."""
        return files_path(self.upstream)


@dataclass(frozen=True)
class Image:
    """One image: the reference nodes pull, and its repository path under a registry mirror."""

    component: str
    ref: str
    upstream: str = ""  # the same image under its upstream name; sources are looked up by it

    @property
    def upstream_path(self) -> str:
        return (self.upstream or self.ref).split("/", 1)[1]

    @property
    def registry(self) -> str:
        return self.ref.split("/", 1)[0]

    @property
    def path(self) -> str:
        """`name:tag` without the registry host: where a registry mirror serves it."""
        return self.ref.split("/", 1)[1]


def files_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


# component -> (upstream URL template); {v} is the version without a leading "v".
UPSTREAM: dict[str, str] = {
    "kubeadm": "https://dl.k8s.io/release/v{v}/bin/linux/{arch}/kubeadm",
    "kubelet": "https://dl.k8s.io/release/v{v}/bin/linux/{arch}/kubelet",
    "kubectl": "https://dl.k8s.io/release/v{v}/bin/linux/{arch}/kubectl",
    "containerd": "https://github.com/containerd/containerd/releases/download/v{v}/containerd-{v}-linux-{arch}.tar.gz",
    "runc": "https://github.com/opencontainers/runc/releases/download/v{v}/runc.{arch}",
    "cni-plugins": "https://github.com/containernetworking/plugins/releases/download/v{v}/cni-plugins-linux-{arch}-v{v}.tgz",
    "crictl": "https://github.com/kubernetes-sigs/cri-tools/releases/download/v{v}/crictl-v{v}-linux-{arch}.tar.gz",
    "etcd": "https://github.com/etcd-io/etcd/releases/download/v{v}/etcd-v{v}-linux-{arch}.tar.gz",
}
COMPONENTS = frozenset(UPSTREAM)


def checksum_table(settings: ArtifactSettings) -> dict[str, dict[str, str]]:
    """The upstream table with the stack's own entries laid over it (a private build wins)."""
    table = {c: dict(v) for c, v in RELEASE_SHA256.items()}
    for component, by_version in settings.checksums.items():
        table.setdefault(component, {}).update(by_version)
    return table


def release_files(
    ver: ArtifactVersions, settings: ArtifactSettings, only: frozenset[str] | None = None
) -> list[ReleaseFile]:
    """Every file a node installs (or the `only` components), pinned; ArtifactError lists each
    version with no known sha256."""
    table = checksum_table(settings)
    wanted = {
        "kubeadm": ver.kubernetes, "kubelet": ver.kubernetes, "kubectl": ver.kubernetes,
        "containerd": ver.containerd, "runc": ver.runc, "cni-plugins": ver.cni_plugins,
        "crictl": ver.crictl, "etcd": ver.etcd,
    }
    out: list[ReleaseFile] = []
    missing: list[str] = []
    for component, version in wanted.items():
        if only is not None and component not in only:
            continue
        version = version.removeprefix("v")
        upstream = UPSTREAM[component].format(v=version, arch=ARCH)
        digest = table.get(component, {}).get(version)
        if digest is None:
            missing.append(f"{component} {version}")
            continue
        url = f"{settings.files_repo}/{files_path(upstream)}" if settings.files_repo else upstream
        out.append(ReleaseFile(component, version, upstream, url, digest))
    if missing:
        raise ArtifactError(
            f"no pinned sha256 for {', '.join(missing)}: add the release's published checksum to "
            "k8s_ha/model/checksums.py, choose a version that has one, or supply "
            "artifacts.checksums in the stack for a private build"
        )
    return out


# Images a manifest of the program's names (pinned there as ref@digest); the nodes pin the others
# (kubeadm's, the pause image, Calico's from its operator) by pulling the digest under the tag.
MANIFEST_IMAGES = frozenset({"flannel", "flannel-cni-plugin", "metrics-server"})


def pinned_ref(ref: str, settings: ArtifactSettings) -> str:
    """`ref@sha256:...` when the stack pins `ref`, else `ref` (pulled by tag)."""
    digest = settings.image_digests.get(ref)
    return f"{ref}@{digest}" if digest else ref


def node_pinned_images(imgs: Iterable[Image], settings: ArtifactSettings) -> list[tuple[str, str]]:
    """(ref, digest) of the pinned images that the nodes themselves must point their tags at."""
    return [(i.ref, settings.image_digests[i.ref]) for i in imgs
            if i.ref in settings.image_digests and i.component not in MANIFEST_IMAGES]


def images(ver: ArtifactVersions) -> list[Image]:
    """Every image the cluster pulls, named as kubeadm and the add-on manifests name them."""
    repo = ver.image_repository
    tag = "v" + ver.kubernetes.removeprefix("v")
    minor = ver.minor
    if minor not in versions.PAUSE_TAGS:
        raise ArtifactError(f"no pause/CoreDNS tags known for Kubernetes 1.{minor} (versions.py)")
    up = DEFAULT_IMAGE_REPOSITORY
    out = [Image(name, f"{repo}/{name}:{tag}", f"{up}/{name}:{tag}") for name in KUBEADM_IMAGES]
    pause = versions.PAUSE_TAGS[minor]
    out.append(Image("pause", f"{repo}/pause:{pause}", f"{up}/pause:{pause}"))
    # kubeadm's GetDNSImage: only the default registry keeps CoreDNS under coredns/coredns.
    dns_repo = f"{repo}/coredns" if repo == DEFAULT_IMAGE_REPOSITORY else repo
    dns = versions.COREDNS_TAGS[minor]
    out.append(Image("coredns", f"{dns_repo}/coredns:{dns}", f"{up}/coredns/coredns:{dns}"))
    if ver.cni == "flannel":
        out.append(Image("flannel", f"{FLANNEL_REPOSITORY}/flannel:{FLANNEL_TAG}"))
        out.append(Image("flannel-cni-plugin", f"{FLANNEL_REPOSITORY}/flannel-cni-plugin:{FLANNEL_CNI_PLUGIN_TAG}"))
    else:
        for name in ("node", "cni", "kube-controllers"):
            out.append(Image(f"calico-{name}", f"quay.io/calico/{name}:{CALICO_TAG}"))
    if ver.metrics_server:
        out.append(Image("metrics-server", f"registry.k8s.io/metrics-server/metrics-server:{METRICS_SERVER_TAG}"))
    return out
