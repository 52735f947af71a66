"""A private libvirtd that serves libvirt's built-in test driver (`test:///default`) on its own socket.

pulumi-libvirt 0.5.4 speaks libvirt's RPC protocol itself (no libvirt client library), so even the
test driver is reached through a daemon socket: by default /var/run/libvirt/libvirt-sock, or the
path in the URI's `socket=` parameter. This daemon runs in a private mount namespace with its own
/run/libvirt, /etc/libvirt and state directories, listens only on a Unix socket in a temporary
directory, and so never meets the machine's or the guests tier's daemons.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.support.libvirtd import lab_libvirtd_conf


class TestDriverDaemon:
    """`with TestDriverDaemon(dir) as daemon: daemon.uri` -> test:///default?socket=..."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path) -> None:
        self.runtime = directory / "run"
        self.state = directory / "state"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.runtime / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"test:///default?socket={self.socket}"

    def __enter__(self) -> TestDriverDaemon:
        for sub in (self.runtime, self.state / "etc", self.state / "lib", self.state / "cache"):
            sub.mkdir(parents=True, exist_ok=True)
        (self.state / "etc/libvirtd.conf").write_text(lab_libvirtd_conf(self.runtime, self.state))
        private = {"/etc/libvirt": self.state / "etc", "/var/lib/libvirt": self.state / "lib",
                   "/var/cache/libvirt": self.state / "cache"}
        mounts = "".join(f"mount --bind {source} {target}\n" for target, source in private.items())
        script = ("set -e\nmount --make-rprivate /\n" + mounts
                  + "mkdir -p /run/libvirt\nmount -t tmpfs -o mode=0755 tmpfs /run/libvirt\n"
                  + f"exec libvirtd -f /etc/libvirt/libvirtd.conf -p {self.runtime}/libvirtd.pid --timeout 0\n")
        with (self.state / "daemon.out").open("wb") as console:
            self.process = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                                            stdin=subprocess.DEVNULL, stdout=console, stderr=console,
                                            start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.socket.exists() and self._answers():
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        self.close()
        raise RuntimeError(f"libvirtd for the test driver did not answer on {self.socket}: "
                           f"{(self.state / 'daemon.out').read_text()[-1500:]}")

    def _answers(self) -> bool:
        probe = subprocess.run(["virsh", "-c", f"test+unix:///default?socket={self.socket}", "version"],
                               capture_output=True, timeout=15, check=False)
        return probe.returncode == 0

    def close(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
