"""The kubelet's machine-global kernel tunables, set once for the tier and put back at teardown.

Outside net.* a sysctl is the machine's, not a network namespace's: a node container sees
/proc/sys read-only (LXC's proc:mixed), and the kubelet, which writes these six at start unless
they already hold its values, would fail ("Failed to start ContainerManager ... read-only file
system"). The values are the kubelet's own (pkg/kubelet/cm setupKernelTunables).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

KUBELET_TUNABLES = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}


class KubeletTunables:
    """A context manager: records each value, sets the kubelet's, restores the recorded ones."""

    def __init__(self, root: Path = Path("/proc/sys")) -> None:
        self.root = root
        self.before: dict[str, str] = {}

    def __enter__(self) -> KubeletTunables:
        for key, value in KUBELET_TUNABLES.items():
            path = self.root / key
            self.before[key] = path.read_text().strip()
            if self.before[key] != value:
                path.write_text(value)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.restore()

    def restore(self) -> None:
        for key, value in self.before.items():
            path = self.root / key
            if path.read_text().strip() != value:
                path.write_text(value)

    def changed(self) -> dict[str, str]:
        """Tunables whose value differs from what was recorded (empty after `restore`)."""
        return {k: (self.root / k).read_text().strip() for k, v in self.before.items()
                if (self.root / k).read_text().strip() != v}
