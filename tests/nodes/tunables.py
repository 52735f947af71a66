"""The machine-global kernel tunables the nodes need, set once for the tier and put back at teardown.

Outside net.* a sysctl is the machine's, not a network namespace's: a node container sees
/proc/sys read-only (LXC's proc:mixed), and the kubelet, which writes these six at start unless
they already hold its values, would fail ("Failed to start ContainerManager ... read-only file
system"). The values are the kubelet's own (pkg/kubelet/cm setupKernelTunables).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType

RECORDS = Path("/run/k8s-ha-lab-tunables")  # <pid>.json: values found by a run still to restore them

KUBELET_TUNABLES = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}


# Every node's root is the machine's root, and inotify instances are counted per user across the
# machine (128 by default): ten nodes' systemd, containerd, kubelet and kube-proxy need more, and
# kube-proxy exits with "too many open files" when it cannot have one. kind's known-issues page
# gives the same advice for several nodes on one host.
INOTIFY_TUNABLES = {"fs/inotify/max_user_instances": "8192", "fs/inotify/max_user_watches": "524288"}
TIER_TUNABLES = {**KUBELET_TUNABLES, **INOTIFY_TUNABLES}


class KubeletTunables:
    """A context manager: records each value, sets the kubelet's, restores the recorded ones."""

    def __init__(self, root: Path = Path("/proc/sys"), record: Path | None = None) -> None:
        """`record`: where the values found are kept until restored, so that a run killed before
        its teardown is put right by the next one (`restore_recorded`)."""
        self.root = root
        self.record = record or RECORDS / f"{os.getpid()}.json"
        self.before: dict[str, str] = {}

    def __enter__(self) -> KubeletTunables:
        self.before = {key: (self.root / key).read_text().strip() for key in TIER_TUNABLES}
        self.record.parent.mkdir(parents=True, exist_ok=True)
        self.record.write_text(json.dumps(self.before))
        for key, value in TIER_TUNABLES.items():
            if self.before[key] != value:
                (self.root / key).write_text(value)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.restore()

    def restore(self) -> None:
        for key, value in self.before.items():
            path = self.root / key
            if path.read_text().strip() != value:
                path.write_text(value)
        self.record.unlink(missing_ok=True)

    def changed(self) -> dict[str, str]:
        """Tunables whose value differs from what was recorded (empty after `restore`)."""
        return {k: (self.root / k).read_text().strip() for k, v in self.before.items()
                if (self.root / k).read_text().strip() != v}


def restore_recorded(root: Path = Path("/proc/sys")) -> list[str]:
    """Put back the values recorded by runs that ended without their teardown (owner gone)."""
    restored = []
    for record in sorted(RECORDS.glob("*.json")) if RECORDS.is_dir() else []:
        if Path(f"/proc/{record.stem}").exists():
            continue
        tunables = KubeletTunables(root, record)
        tunables.before = json.loads(record.read_text())
        tunables.restore()
        restored.append(record.stem)
    return restored
