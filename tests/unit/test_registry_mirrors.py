"""hosts.toml per upstream registry: valid TOML with containerd's keys only, the mirror first,
upstream only when asked, HTTPS unless plain HTTP is asked for, the mirror's CA inside each host
table, and no registry that both Harbor's proxy cache and the mirror would serve."""

from __future__ import annotations

import ipaddress
import tomllib
from typing import Any

import pytest

from k8s_ha.model.artifacts import HARBOR_PROXY_PROJECTS, ArtifactSettings, ArtifactVersions, images, registry_routes
from k8s_ha.render import kubernetes as k
from k8s_ha.render import material as m
from k8s_ha.render.registry_mirrors import mirror_ca_path, mirror_hosts

IMAGES = images(ArtifactVersions(cni="flannel", metrics_server=True))
MIRROR = "10.0.0.5:5000"
CERTS = "/etc/containerd/certs.d"
CA = "-----BEGIN CERTIFICATE-----\nTWlycm9yIENB\n-----END CERTIFICATE-----\n"
# The keys containerd's hosts.toml reader knows (remotes/docker/config/hosts.go): at the top,
# and in each [host."..."] table. An unknown key is silently ignored by containerd, so a typo would
# turn verification off without a word; these sets catch it.
TOP_KEYS = {"server", "capabilities", "ca", "client", "skip_verify", "header", "override_path", "host"}
HOST_KEYS = {"capabilities", "ca", "client", "skip_verify", "header", "override_path"}


def hosts_doc(text: str) -> dict[str, Any]:
    """`text` read as containerd reads it, refusing keys containerd would ignore and a `ca` at the
    top (it applies to `server` only, not to the mirror hosts: containerd#7118)."""
    doc = tomllib.loads(text)
    assert set(doc) <= TOP_KEYS, f"unknown keys {set(doc) - TOP_KEYS}"
    assert "ca" not in doc and "skip_verify" not in doc
    for url, table in doc["host"].items():
        assert set(table) <= HOST_KEYS, f"{url}: unknown keys {set(table) - HOST_KEYS}"
        assert "skip_verify" not in table, f"{url}: TLS verification must stay on"
    return doc


def test_no_mirror_no_files() -> None:
    assert mirror_hosts(ArtifactSettings(), IMAGES) == {}


def test_https_by_default_against_the_system_roots() -> None:
    files = mirror_hosts(ArtifactSettings(imageRegistry=MIRROR), IMAGES)
    assert set(files) == {f"/etc/containerd/certs.d/{r}/hosts.toml" for r in ("registry.k8s.io", "ghcr.io")}
    for content in files.values():
        doc = hosts_doc(content)
        assert doc["server"] == f"https://{MIRROR}"
        assert doc["host"] == {f"https://{MIRROR}": {"capabilities": ["pull", "resolve"]}}


def test_https_with_the_stacks_ca_named_inside_each_host_table() -> None:
    files = mirror_hosts(ArtifactSettings(imageRegistry=MIRROR), IMAGES, ca=CA)
    ca_path = mirror_ca_path(MIRROR)
    assert ca_path == f"/etc/containerd/certs.d/{MIRROR}/ca.crt" and files[ca_path] == CA
    tomls = {path: hosts_doc(text) for path, text in files.items() if path.endswith("/hosts.toml")}
    assert len(tomls) == 2
    for doc in tomls.values():
        assert doc["server"] == f"https://{MIRROR}"
        assert doc["host"][f"https://{MIRROR}"] == {"capabilities": ["pull", "resolve"], "ca": ca_path}


def test_plain_http_only_when_asked_and_never_with_a_ca() -> None:
    files = mirror_hosts(ArtifactSettings(imageRegistry=MIRROR), IMAGES, plain_http=True)
    for content in files.values():
        doc = hosts_doc(content)
        assert doc["server"] == f"http://{MIRROR}"
        assert doc["host"] == {f"http://{MIRROR}": {"capabilities": ["pull", "resolve"]}}
    with pytest.raises(ValueError, match=f"mirror {MIRROR} is plain HTTP, so a CA for it means nothing"):
        mirror_hosts(ArtifactSettings(imageRegistry=MIRROR), IMAGES, plain_http=True, ca=CA)


def test_fallback_keeps_upstream_as_server() -> None:
    files = mirror_hosts(ArtifactSettings(imageRegistry="mirror.example:443"), IMAGES, fallback=True)
    doc = hosts_doc(files["/etc/containerd/certs.d/ghcr.io/hosts.toml"])
    assert doc["server"] == "https://ghcr.io" and "https://mirror.example:443" in doc["host"]


def test_a_registry_both_could_serve_goes_where_the_stack_says_or_is_contested() -> None:
    mirrored = ["registry.k8s.io", "ghcr.io"]
    unset = registry_routes(ArtifactSettings(imageRegistry=MIRROR), mirrored, harbor_proxy=True)
    assert unset.contested == ("registry.k8s.io",)
    assert unset.mirror == {"ghcr.io"} and unset.harbor == {"docker.io", "quay.io"}
    mirror = registry_routes(ArtifactSettings(imageRegistry=MIRROR, imageRegistryPrecedence="mirror"),
                             mirrored, harbor_proxy=True)
    assert (mirror.mirror, mirror.harbor, mirror.contested) == (
        {"registry.k8s.io", "ghcr.io"}, {"docker.io", "quay.io"}, ())
    harbor = registry_routes(ArtifactSettings(imageRegistry=MIRROR, imageRegistryPrecedence="harbor"),
                             mirrored, harbor_proxy=True)
    assert (harbor.mirror, harbor.harbor, harbor.contested) == (
        {"ghcr.io"}, {"docker.io", "registry.k8s.io", "quay.io"}, ())
    alone = registry_routes(ArtifactSettings(), mirrored, harbor_proxy=True)  # no mirror: Harbor alone
    assert (alone.mirror, alone.contested) == (frozenset(), ())
    no_proxy = registry_routes(ArtifactSettings(imageRegistry=MIRROR), mirrored, harbor_proxy=False)
    assert (no_proxy.mirror, no_proxy.harbor, no_proxy.contested) == (set(mirrored), frozenset(), ())


def _config(proxy_cache: bool, image_registry: str | None, precedence: str | None = None) -> k.KubernetesConfig:
    artifacts = ArtifactSettings.model_validate({"imageRegistry": image_registry,
                                                 "imageRegistryPrecedence": precedence})
    return k.KubernetesConfig(
        vip=ipaddress.IPv4Address("10.0.0.10"), etcd_endpoints=("https://10.0.0.11:2379",),
        registry=k.RegistryMirror("10.0.0.40", proxy_cache=proxy_cache), artifacts=artifacts,
    )


def _server(files: list[k.HostFile], registry: str) -> str:
    return str(hosts_doc(next(f.content for f in files if f.path == f"{CERTS}/{registry}/hosts.toml"))["server"])


def test_the_nodes_registry_files_follow_the_precedence_or_refuse_two_answers() -> None:
    material = {m.HARBOR_CERT: CA}
    # The config refuses itself with the stack's rule, so no renderer is handed one.
    with pytest.raises(ValueError, match=r"^KubernetesConfig.artifacts.imageRegistryPrecedence: images from "
                                         r"\['quay.io', 'registry.k8s.io'\] would come both "
                                         r"through Harbor's proxy cache \(harbor.proxyCache\) and from the image "
                                         r"registry mirror 10.0.0.5:5000 \(artifacts.imageRegistry\): "
                                         r"say which wins with artifacts.imageRegistryPrecedence"):
        _config(True, MIRROR)
    # Without Harbor's proxy cache nothing is served twice: Harbor for its own name, the mirror for the rest.
    paths = {f.path for f in k.registry_host_files(_config(False, MIRROR), material)}
    assert f"{CERTS}/10.0.0.40/hosts.toml" in paths and f"{CERTS}/registry.k8s.io/hosts.toml" in paths
    assert {f.path for f in k.registry_host_files(_config(True, None), material)} >= {
        f"{CERTS}/{r}/hosts.toml" for r in HARBOR_PROXY_PROJECTS}
    # One hosts.toml per registry, from the side the stack named.
    # One hosts.toml per registry, from the side the stack named (the default CNI's images come from
    # registry.k8s.io and quay.io, both of which Harbor also caches; docker.io only Harbor serves).
    for precedence, servers in (("mirror", (f"https://{MIRROR}", f"https://{MIRROR}")),
                                ("harbor", ("https://registry.k8s.io", "https://quay.io"))):
        files = k.registry_host_files(_config(True, MIRROR, precedence), material)
        paths_list = [f.path for f in files]
        assert len(paths_list) == len(set(paths_list))
        assert (_server(files, "registry.k8s.io"), _server(files, "quay.io")) == servers
        assert _server(files, "docker.io") == "https://registry-1.docker.io"
