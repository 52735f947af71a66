"""Lab nodes as system containers (LXC), on one bridge inside a lab network namespace.

    machine's namespaces: untouched (no bridge, veth, address or route; no cgroup at a root)
    ┌ netns k8snodes-PID-RAND ─── bridge br0 (.1: the operator's workstation, serve-bundle) ┐
    │   v-cp1 ── veth ──┐   v-etcd1 ── veth ──┐   ...                                        │
    └───────────────────┼─────────────────────┼────────────────────────────────────────────┘
      netns ...-cp1: eth0 (the node's MAC)   netns ...-etcd1: eth0      one per node
      LXC container cp1: systemd as PID 1, its own mount/PID/UTS/IPC/cgroup namespaces,
      root = overlay(base image rootfs, per-node upper), /var/lib/{containerd,kubelet} on ext4

A node boots from the program's own image (the `image` command's recipe, as a root file system
tar), copy-on-write per node, and gets the program's rendered cloud-init user-data and
network-config through NoCloud, so it comes up with its hostname, address and pinned SSH host key
as a VM does. Powering off kills every process in it (SIGKILL to its init: the PID namespace goes)
and takes its link down; powering on boots the same disk again.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from k8s_ha.render.templating import CONFIGS
from tests.guests.hypervisors import netns_inode, pids_in_netns
from tests.nodes.cgroups import TierCgroups

PREFIX = "k8snodes"
BRIDGE = "br0"
CONFIG_TEMPLATE = CONFIGS / "lab" / "node-container.conf"
START_HOOK = CONFIGS / "lab" / "node-start.sh"
BOOT_TIMEOUT_S = 60.0


class NodeError(RuntimeError):
    """A node container could not be made, started or removed."""


def run(argv: list[str], *, check: bool = True, timeout: float = 60,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise NodeError(f"{' '.join(argv)} exited {done.returncode}: {(done.stderr or done.stdout).strip()[-800:]}")
    return done


def unpacked_rootfs(tar: Path) -> Path:
    """The image's root file system unpacked once beside its tar: the shared lower layer."""
    lower = tar.with_name(tar.name.removesuffix(".tar"))
    if not (lower / ".unpacked").is_file():
        shutil.rmtree(lower, ignore_errors=True)
        lower.mkdir()
        run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "-xpf", str(tar), "-C",
             str(lower)], timeout=600)
        (lower / ".unpacked").write_text(tar.name + "\n")
    return lower


@dataclass(frozen=True)
class Seed:
    """The NoCloud files a node boots with (rendered by the program's cloud-init renderer)."""

    user_data: str
    network_config: str
    instance_id: str


class NodeContainer:
    """One node: its network namespace, veth, overlay root, LXC config; start, power off/on, remove."""

    def __init__(self, lab: NodeLab, name: str, mac: str, rootfs: Path, seed: Seed,
                 files: dict[str, str] | None = None) -> None:
        self.lab, self.name, self.mac = lab, name, mac
        self.files = files or {}
        self.dir = lab.work / name
        self.netns = f"{lab.run_id}-{name}"
        self.link = f"v-{name}"[:15]
        self.lower = rootfs
        self.merged = self.dir / "rootfs"
        self.seed = seed
        self.started_at = 0.0

    # ----------------------------------------------------------------- make
    def create(self) -> None:
        for sub in ("upper", "overlay-work", "rootfs", "seed", "log", "state/containerd", "state/kubelet"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "seed" / "user-data").write_text(self.seed.user_data)
        (self.dir / "seed" / "network-config").write_text(self.seed.network_config)
        (self.dir / "seed" / "meta-data").write_text(
            f"instance-id: {self.seed.instance_id}\nlocal-hostname: {self.name}\n")
        for path, text in self.files.items():  # the host's own settings, before its first boot
            target = self.dir / "upper" / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={self.lower},upperdir={self.dir / 'upper'},workdir={self.dir / 'overlay-work'}",
             str(self.merged)])
        config = CONFIG_TEMPLATE.read_text().format(
            name=self.name, rootfs=self.merged, netns=f"/run/netns/{self.netns}", seed=self.dir / "seed",
            state=self.dir / "state", hook=START_HOOK, log_dir=self.dir / "log")
        lxc_dir = self.lab.lxc_path / self.name
        lxc_dir.mkdir(parents=True, exist_ok=True)
        (lxc_dir / "config").write_text(config)
        self._wire()

    def _wire(self) -> None:
        """The node's network namespace and its veth to the lab bridge (both ends made inside the
        lab's namespaces: nothing appears in the machine's own)."""
        run(["ip", "netns", "add", self.netns])
        sw = ["ip", "-n", self.lab.netns]
        run([*sw, "link", "add", self.link, "type", "veth", "peer", "name", "eth0", "netns", self.netns])
        run(["ip", "-n", self.netns, "link", "set", "eth0", "address", self.mac])
        run([*sw, "link", "set", self.link, "master", BRIDGE, "up"])

    # ------------------------------------------------------------- lifecycle
    def _lxc(self, tool: str, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run([tool, "-n", self.name, "-P", str(self.lab.lxc_path), *args], check=check, timeout=timeout)

    def start(self) -> float:
        """Boot the node (its starter moved into the tier's cgroups first). Returns the instant."""
        run(["ip", "-n", self.lab.netns, "link", "set", self.link, "up"])
        procs = [str(p) for p in self.lab.cgroups.procs_files()]
        started = time.monotonic()
        script = ('name=$1 path=$2; shift 2; for f in "$@"; do echo $$ >"$f"; done; '
                  'exec lxc-start -n "$name" -P "$path" -d')
        run(["sh", "-c", script, "k8sha-node-starter", self.name, str(self.lab.lxc_path), *procs])
        self._lxc("lxc-wait", "-s", "RUNNING", "-t", "30", timeout=40)
        self.started_at = started
        return started

    def pid(self) -> int | None:
        done = self._lxc("lxc-info", "-p", "-H", check=False)
        return int(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip().isdigit() else None

    def running(self) -> bool:
        return "RUNNING" in self._lxc("lxc-info", "-s", "-H", check=False).stdout

    def power_off(self) -> float:
        """Pull the plug: SIGKILL to the node's init ends its PID namespace (every process in it);
        its link goes down. Returns the instant of the kill (CLOCK_MONOTONIC)."""
        pid = self.pid()
        cut = time.monotonic()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run(["ip", "-n", self.lab.netns, "link", "set", self.link, "down"], check=False)
        self._lxc("lxc-wait", "-s", "STOPPED", "-t", "30", check=False, timeout=40)
        return cut

    def cable(self, plugged: bool) -> None:
        """Put the node's veth on the lab bridge, or take it off (the node keeps running: a host
        that is not on the stack's network)."""
        run(["ip", "-n", self.lab.netns, "link", "set", self.link, *(["master", BRIDGE] if plugged else ["nomaster"])])

    def attach(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A command inside the node without SSH (diagnostics)."""
        return self._lxc("lxc-attach", "--", "sh", "-c", command, check=False, timeout=timeout)

    def remove(self) -> list[str]:
        """Kill, unmount, delete the namespace; what could not be removed."""
        problems: list[str] = []
        if self.running():
            self.power_off()
        if (inode := netns_inode(self.netns)) is not None:
            for pid in pids_in_netns(inode):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if os.path.ismount(self.merged):
            done = run(["umount", str(self.merged)], check=False)
            if done.returncode != 0:
                problems.append(f"{self.name}: umount {self.merged}: {done.stderr.strip()}")
        if netns_inode(self.netns) is not None:
            run(["ip", "netns", "del", self.netns], check=False)
        return problems


class NodeLab:
    """The lab namespace with its bridge, the tier's cgroups, and the node containers."""

    def __init__(self, work: Path, subnet_prefix: str = "10.213.0", prefixlen: int = 24) -> None:
        self.run_id = f"{PREFIX}-{os.getpid()}-{secrets.token_hex(2)}"
        self.netns = self.run_id
        self.client_ip = f"{subnet_prefix}.1"
        self.prefixlen = prefixlen
        self.work = work / self.run_id
        self.lxc_path = self.work / "lxc"
        self.cgroups = TierCgroups(self.run_id)
        self.nodes: dict[str, NodeContainer] = {}

    def __enter__(self) -> NodeLab:
        try:
            self.work.mkdir(parents=True)
            self.lxc_path.mkdir()
            run(["ip", "netns", "add", self.netns])
            ns = ["ip", "-n", self.netns]
            run([*ns, "link", "set", "lo", "up"])
            run([*ns, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0"])
            run([*ns, "addr", "add", f"{self.client_ip}/{self.prefixlen}", "dev", BRIDGE])
            run([*ns, "link", "set", BRIDGE, "up"])
            self.cgroups.create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, name: str, mac: str, rootfs: Path, seed: Seed, files: dict[str, str] | None = None) -> NodeContainer:
        """`files`: path -> text written into the node's own layer before it boots (host settings
        a site's base image would carry, which the program does not manage)."""
        node = NodeContainer(self, name, mac, rootfs, seed, files)
        self.nodes[name] = node
        node.create()
        return node

    def netns_argv(self, argv: list[str]) -> list[str]:
        """Run `argv` as the operator's workstation (inside the lab namespace, on the bridge)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def close(self) -> list[str]:
        problems: list[str] = []
        for node in self.nodes.values():
            problems += node.remove()
        if (inode := netns_inode(self.netns)) is not None:
            for pid in pids_in_netns(inode):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            run(["ip", "netns", "del", self.netns], check=False)
        problems += self.cgroups.remove()
        shutil.rmtree(self.work, ignore_errors=True)
        return problems

    def leftovers(self) -> list[str]:
        """Anything of this run still on the machine: namespaces, processes, mounts, cgroups, files."""
        found = []
        for ns in [self.netns, *(n.netns for n in self.nodes.values())]:
            if (inode := netns_inode(ns)) is not None:
                found.append(f"network namespace {ns}")
                found += [f"process {p} in {ns}" for p in pids_in_netns(inode)]
        mounts = Path("/proc/self/mountinfo").read_text()
        found += [f"mount {line.split()[4]}" for line in mounts.splitlines() if str(self.work) in line.split()[4]]
        found += [f"cgroup {d}" for d in self.cgroups.dirs if d.exists()]
        found += [f"LXC monitor {pid}" for pid in lxc_monitors(self.lxc_path)]
        if self.work.exists():
            found.append(f"directory {self.work}")
        return found


def lxc_monitors(lxc_path: Path | str) -> list[int]:
    """PIDs of LXC monitors (and starters) of containers under `lxc_path`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if str(lxc_path).encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
    return found


def cleanup_stale(work_root: Path | None = None) -> list[str]:
    """Remove the namespaces and cgroups of earlier runs whose owner process is gone (a run that
    was killed before its teardown)."""
    removed = []
    names = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    owners = {n.split("-")[1] for n in names if n.startswith(PREFIX + "-") and n.split("-")[1].isdigit()}
    for owner in sorted(owners):
        if Path(f"/proc/{owner}").exists():
            continue
        for ns in [n for n in names if n.startswith(f"{PREFIX}-{owner}-")]:
            if (inode := netns_inode(ns)) is not None:
                for pid in pids_in_netns(inode):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            run(["ip", "netns", "del", ns], check=False)
            removed.append(ns)
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4]
            if f"/{PREFIX}-{owner}-" in point:
                run(["umount", "-l", point], check=False)
    from tests.nodes.cgroups import hierarchies
    from tests.nodes.tunables import restore_recorded

    removed += [f"tunables of run {pid}" for pid in restore_recorded()]

    for h in hierarchies():
        parent = h.mount / h.current.lstrip("/")
        for d in parent.glob(f"{PREFIX}-*"):
            owner = d.name.split("-")[1]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                tier = TierCgroups(d.name)
                tier.dirs = [d]
                tier.remove(timeout=5)
    return removed
