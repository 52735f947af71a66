"""Lab tier: real SSH, real daemons, namespace "hosts" on this machine (docs/lab.md).

The tier needs root, network/mount/PID namespaces, overlayfs and the real
binaries.  Where any is missing every lab test is skipped with the reason
printed (pytest -ra), or fails under K8SHA_REQUIRE_TOOLS=1 as in CI (see
tests/tools.py).  Put lab tests in this directory and use `make_lab`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from tests.lab.labhosts import DEFAULT_PREFIX, HostSpec, Lab, SshKey, cleanup_stale
from tests.tools import require_root, require_tool

TOOLS = ("ip", "unshare", "nsenter", "ssh", "ssh-keygen", "sshd", "haproxy", "keepalived",
         "etcd", "etcdctl", "curl", "pgrep")

# Everything the lab does to the machine, tried once in a throwaway namespace.
_PROBE = r"""
set -eu
ns=$1; dir=$2
ip netns add "$ns"
trap 'ip netns del "$ns"; rm -rf "$dir"' EXIT
mkdir -p "$dir/lower" "$dir/upper" "$dir/work" "$dir/merged"
ip netns exec "$ns" unshare --mount --uts --ipc --pid --fork --mount-proc --propagation private \
  sh -c "mount -t overlay probe -o lowerdir=$dir/lower,upperdir=$dir/upper,workdir=$dir/work $dir/merged"
"""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: real bootstrap scripts on namespace hosts over SSH (root)")


def _unavailable(reason: str) -> None:
    message = f"lab tier cannot run here: {reason}"
    if os.environ.get("K8SHA_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def lab_available(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip (or fail in CI) unless namespaces, overlayfs and the binaries work."""
    require_root("the lab creates network, mount and PID namespaces")
    for tool in TOOLS:
        require_tool(tool, "the lab tier runs the real binary")
    probe = subprocess.run(
        ["bash", "-c", _PROBE, "probe", f"{DEFAULT_PREFIX}-{os.getpid()}-probe",
         str(tmp_path_factory.mktemp("probe"))], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        _unavailable(f"namespaces or overlayfs not permitted: {probe.stderr.strip()}")
    cleanup_stale(DEFAULT_PREFIX)


class KeyStore:
    """ed25519 keys generated once per session and reused, by name."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._keys: dict[str, SshKey] = {}

    def __call__(self, name: str) -> SshKey:
        if name not in self._keys:
            self._keys[name] = SshKey.generate(self.directory / name, comment=f"lab-{name}")
        return self._keys[name]


@pytest.fixture(scope="session")
def lab_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    """`lab_keys("client")` is the operator's key; `lab_keys(host)` a host key."""
    return KeyStore(tmp_path_factory.mktemp("lab-keys"))


class MakeLab(Protocol):
    def __call__(self, names: list[str], *, subnet: str = ...) -> Lab: ...


@pytest.fixture
def make_lab(lab_available: None, lab_keys: KeyStore) -> Iterator[MakeLab]:
    """Factory: `lab = make_lab(["lb1", "lb2"])` is up; it is torn down after the test.

    Teardown is then checked: a lab that leaves anything behind fails the test.
    """
    labs: list[Lab] = []

    def make(names: list[str], *, subnet: str = "10.211.0.0/24") -> Lab:
        specs = [HostSpec(name, lab_keys(f"host-{name}")) for name in names]
        lab = Lab(specs, lab_keys("client"), subnet=subnet)
        labs.append(lab)
        return lab.__enter__()

    yield make
    for lab in labs:
        lab.close()
    leftovers = [item for lab in labs for item in lab.leftovers()]
    assert not leftovers, f"lab teardown left things behind: {leftovers}"
