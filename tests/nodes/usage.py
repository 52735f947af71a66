"""What each node container costs the machine, read from its own cgroups (lxc.payload.NAME below
the tier's cgroup): CPU in percent of one core over a window, and resident memory."""

from __future__ import annotations

import time
from pathlib import Path

from tests.nodes.containers import NodeLab


def _payload(lab: NodeLab, controller: str, node: str) -> Path | None:
    tier = lab.cgroups.of(controller)
    return None if tier is None else tier / f"lxc.payload.{node}"


def cpu_percent(lab: NodeLab, nodes: tuple[str, ...], seconds: float = 60.0) -> dict[str, float]:
    """Each node's CPU (cpuacct.usage, every process in it) over `seconds`, in % of one core."""
    files = {n: p / "cpuacct.usage" for n in nodes if (p := _payload(lab, "cpuacct", n)) is not None}
    before = {n: int(f.read_text()) for n, f in files.items()}
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    return {n: round((int(f.read_text()) - before[n]) / 1e9 / elapsed * 100.0, 1) for n, f in files.items()}


def memory_mib(lab: NodeLab, nodes: tuple[str, ...]) -> dict[str, int]:
    """Each node's resident memory (memory.stat total_rss: anonymous memory, page cache left out)."""
    out = {}
    for node in nodes:
        path = _payload(lab, "memory", node)
        if path is None or not (path / "memory.stat").is_file():
            continue
        stat = dict(line.split() for line in (path / "memory.stat").read_text().splitlines())
        out[node] = int(stat.get("total_rss", 0)) >> 20
    return out
