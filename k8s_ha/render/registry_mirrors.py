"""containerd's `hosts.toml` per upstream registry, pointing every image pull at the stack's
registry mirror (`artifacts.imageRegistry`, e.g. a served bundle). containerd asks a mirror for
`/v2/<repository path>/...` with the upstream host dropped, which is where `serve-bundle` puts them.

The mirror is reached over HTTPS unless the caller says plain HTTP: verified against the CA given
(written beside the hosts files and named inside each host table, where containerd applies it to
that host), else against the node's system roots. Which registries the mirror serves when Harbor's
proxy cache could serve them too is decided by `registry_routes` (model), not here.
"""

from __future__ import annotations

from k8s_ha.model.artifacts import ArtifactSettings, Image
from k8s_ha.render.templating import render

CERTS_D = "/etc/containerd/certs.d"


def mirror_ca_path(mirror: str) -> str:
    """Where the mirror's CA goes: its own certs.d directory, which containerd also reads when an
    image names the mirror itself."""
    return f"{CERTS_D}/{mirror}/ca.crt"


def mirror_hosts(settings: ArtifactSettings, images: list[Image], *, plain_http: bool = False,
                 ca: str | None = None, fallback: bool = False) -> dict[str, str]:
    """`/etc/containerd/certs.d/<registry>/hosts.toml` -> content, one per registry the images use,
    plus the mirror's CA (PEM) when one is given.

    HTTPS unless `plain_http`; `ca` is only meaningful with HTTPS. Without `fallback` the server is
    the mirror itself, so an air-gapped node never tries upstream.
    """
    mirror = settings.image_registry
    if mirror is None:
        return {}
    if plain_http and ca is not None:
        raise ValueError(f"the image registry mirror {mirror} is plain HTTP, so a CA for it means nothing: "
                         "drop the CA or serve the mirror over HTTPS")
    scheme = "http" if plain_http else "https"
    ca_path = mirror_ca_path(mirror) if ca is not None else None
    out: dict[str, str] = {}
    for registry in sorted({image.registry for image in images}):
        server = f"https://{registry}" if fallback else f"{scheme}://{mirror}"
        out[f"{CERTS_D}/{registry}/hosts.toml"] = render(
            "containerd/hosts.toml.j2", registry=registry, mirror=mirror, scheme=scheme,
            server=server, fallback=fallback, ca_path=ca_path,
        )
    if ca is not None and ca_path is not None:
        out[ca_path] = ca
    return out
