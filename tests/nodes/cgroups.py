"""The tier's own cgroup in every hierarchy, below the cgroups the tests run in.

PID 1 on this kind of machine is not systemd, so nothing hands a container manager a delegated
subtree. Each node's starter is moved into `<test's cgroup>/<tier>` in every hierarchy before it
boots; LXC then makes the node's `lxc.payload.NAME` there (`lxc.cgroup.relative = 1`), so no node
ever creates `system.slice` or `kubepods.slice` at a hierarchy's root or inside another node.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Hierarchy:
    controllers: str  # "memory", "name=systemd", "" for the cgroup v2 hierarchy
    mount: Path  # where the machine mounts it
    current: str  # this process's cgroup in it

    @property
    def cgroup_v2(self) -> bool:
        return self.controllers == ""


def _mounts() -> dict[frozenset[str], Path]:
    """cgroup mounts by their controller set (cgroup v2: the empty set)."""
    found: dict[frozenset[str], Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _source, options = right.split(" ")[:3]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        point = Path(left.split(" ")[4])
        if fstype == "cgroup2":
            found.setdefault(frozenset(), point)
            continue
        names = {o for o in options.split(",") if (o not in ("rw", "ro") and "=" not in o) or o.startswith("name=")}
        found.setdefault(frozenset(names), point)
    return found


def hierarchies() -> list[Hierarchy]:
    """Every cgroup hierarchy this process is in, with its mount point."""
    mounts = _mounts()
    out = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _id, controllers, path = line.split(":", 2)
        key = frozenset(controllers.split(",")) if controllers else frozenset()
        if key in mounts:
            out.append(Hierarchy(controllers, mounts[key], path))
    return out


class TierCgroups:
    """`<current>/<name>` in every hierarchy; `procs_files()` are what a starter writes its PID to."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.by_controllers = {h.controllers: h.mount / h.current.lstrip("/") / name for h in hierarchies()}
        self.dirs = list(self.by_controllers.values())

    def of(self, controller: str) -> Path | None:
        """The tier's cgroup in the hierarchy that has `controller` (e.g. "memory")."""
        return next((d for c, d in self.by_controllers.items() if controller in c.split(",")), None)

    def create(self) -> None:
        for d in self.dirs:
            d.mkdir(exist_ok=True)
            if (d / "cpuset.cpus").exists():  # a cpuset v1 child starts empty: inherit the parent's
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (d / knob).write_text((d.parent / knob).read_text())
                (d / "cgroup.clone_children").write_text("1")

    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def remove(self, timeout: float = 30.0) -> list[str]:
        """Remove the tier's cgroups, deepest first (a node's systemd leaves slices behind when
        killed); returns what could not be removed."""
        deadline = time.monotonic() + timeout
        left: list[str] = []
        for top in self.dirs:
            if not top.exists():
                continue
            subtree = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
            for d in [*subtree, top]:
                while d.exists():
                    with contextlib.suppress(OSError):
                        d.rmdir()
                    if not d.exists() or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
            if top.exists():
                left.append(f"cgroup {top}")
        return left
