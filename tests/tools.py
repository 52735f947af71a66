"""Finding the real tools a tier needs. A missing tool skips with the reason printed, except under
`K8SHA_REQUIRE_TOOLS=1` (set by .ci/run, which installs them all): there a missing tool fails."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def require_tool(name: str, why: str = "") -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None
    )
    if path:
        return path
    message = f"{name} is not installed{': ' + why if why else ''} (bash .ci/run installs it)"
    if os.environ.get("K8SHA_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        message = f"needs root: {why}"
        if os.environ.get("K8SHA_REQUIRE_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)


def containerd2() -> str:
    """The containerd 2.x binary the render tier validates configs with: built from the Go module
    proxy by scripts/test into .cache/tools (Debian has only containerd 1.x)."""
    from k8s_ha.model.versions import DEFAULT_CONTAINERD

    root = Path(__file__).resolve().parents[1]
    path = Path(os.environ.get("K8SHA_CONTAINERD2", root / f".cache/tools/containerd-v{DEFAULT_CONTAINERD}/containerd"))
    if os.access(path, os.X_OK):
        return str(path)
    message = f"containerd {DEFAULT_CONTAINERD} is not built at {path} (scripts/test builds it)"
    if os.environ.get("K8SHA_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)
