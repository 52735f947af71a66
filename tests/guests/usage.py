"""What each booted guest costs the host, read from its QEMU process: resident memory and the share
of one core it burns. Idle CPU decides how many TCG guests 2 cores can carry (docs/lab.md)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.guests.hypervisors import LabHypervisors


def qemu_pids(hvs: LabHypervisors, names: tuple[str, ...], cluster: str = "guests") -> dict[str, int]:
    """Guest name -> its QEMU pid (libvirt names the domain `k8s-ha-CLUSTER-NAME`)."""
    found: dict[str, int] = {}
    for pid in hvs._pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not cmdline or b"qemu-system" not in cmdline[0]:
            continue
        joined = b" ".join(cmdline)
        name = next((n for n in names if f"guest=k8s-ha-{cluster}-{n},".encode() in joined), None)
        if name:
            found[name] = pid
    return found


def rss_mib(pid: int) -> int:
    """Resident MiB (guest RAM it touched + QEMU + TCG translation cache)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0) // 1024


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def cpu_percent(pids: dict[str, int], seconds: float = 30.0) -> dict[str, float]:
    """Each process's CPU over `seconds`, in percent of one core, sampled together."""
    hz = os.sysconf("SC_CLK_TCK")
    before = {n: _cpu_ticks(p) for n, p in pids.items()}
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    return {n: round(100.0 * (_cpu_ticks(p) - before[n]) / hz / elapsed, 1) for n, p in pids.items()}
