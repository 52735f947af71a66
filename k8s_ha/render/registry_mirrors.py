"""containerd's `hosts.toml` per upstream registry, pointing every image pull at the stack's
registry mirror (`artifacts.imageRegistry`, e.g. a served bundle). containerd asks a mirror for
`/v2/<repository path>/...` with the upstream host dropped, which is where `serve-bundle` puts them.
"""

from __future__ import annotations

from k8s_ha.model.artifacts import ArtifactSettings, Image
from k8s_ha.render.templating import render

CERTS_D = "/etc/containerd/certs.d"


def mirror_hosts(settings: ArtifactSettings, images: list[Image], plain_http: bool = True,
                 fallback: bool = False) -> dict[str, str]:
    """`/etc/containerd/certs.d/<registry>/hosts.toml` -> content, one per registry the images use.

    Without `fallback` the server is the mirror itself, so an air-gapped node never tries upstream.
    """
    mirror = settings.image_registry
    if mirror is None:
        return {}
    scheme = "http" if plain_http else "https"
    out: dict[str, str] = {}
    for registry in sorted({image.registry for image in images}):
        server = f"https://{registry}" if fallback else f"{scheme}://{mirror}"
        out[f"{CERTS_D}/{registry}/hosts.toml"] = render(
            "containerd/hosts.toml.j2", registry=registry, mirror=mirror, scheme=scheme,
            server=server, fallback=fallback,
        )
    return out
