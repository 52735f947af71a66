"""hosts.toml per upstream registry: valid TOML, the mirror first, upstream only when asked."""

from __future__ import annotations

import tomllib

from k8s_ha.model.artifacts import ArtifactSettings, ArtifactVersions, images
from k8s_ha.render.registry_mirrors import mirror_hosts

IMAGES = images(ArtifactVersions(cni="flannel", metrics_server=True))


def test_no_mirror_no_files() -> None:
    assert mirror_hosts(ArtifactSettings(), IMAGES) == {}


def test_every_registry_goes_to_the_mirror_and_nowhere_else() -> None:
    files = mirror_hosts(ArtifactSettings(imageRegistry="10.0.0.5:5000"), IMAGES)
    assert set(files) == {f"/etc/containerd/certs.d/{r}/hosts.toml" for r in ("registry.k8s.io", "ghcr.io")}
    for content in files.values():
        doc = tomllib.loads(content)
        assert doc["server"] == "http://10.0.0.5:5000"
        assert doc["host"] == {"http://10.0.0.5:5000": {"capabilities": ["pull", "resolve"]}}


def test_fallback_keeps_upstream_as_server() -> None:
    files = mirror_hosts(ArtifactSettings(imageRegistry="mirror.example:443"), IMAGES, plain_http=False, fallback=True)
    doc = tomllib.loads(files["/etc/containerd/certs.d/ghcr.io/hosts.toml"])
    assert doc["server"] == "https://ghcr.io" and "https://mirror.example:443" in doc["host"]
