"""Two lab libvirt hypervisors ("hv-a", "hv-b") on one machine, guests on one bridge in a namespace.

    machine's namespaces: untouched (no bridge, no tap, no address, no route)
    ┌ netns k8sguests-PID-RAND ──────────── bridge br0 (.1: the operator's workstation) ─┐
    │  libvirtd hv-a (own mount ns)   -> qemu guests -> taps on br0                       │
    │  libvirtd hv-b (own mount ns)   -> qemu guests -> taps on br0                       │
    └─────────────────────────────────────────────────────────────────────────────────────┘

Both daemons run inside the one network namespace (`ip netns exec`), so every tap QEMU opens lands
there, on the bridge: one L2 segment, like two hosts on one rack switch. Each daemon has a private
mount namespace in which /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and
/var/log/libvirt are its own directories (two daemons otherwise fight over /run/libvirt's pid file),
and its socket in a short runtime directory the test can reach:
`qemu:///system?socket=/run/k8sguests-.../hv-a/libvirt-sock`.

Teardown kills, by PID, every process in the namespace (daemons and QEMUs), deletes the namespace
(taps and bridge go with it) and removes the directories; `leftovers()` proves it.
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
from types import TracebackType
from typing import Any

from tests.guests.binding import libvirt
from tests.support.libvirtd import lab_libvirtd_conf

PREFIX = "k8sguests"
BRIDGE = "br0"
ROOT = Path(__file__).resolve().parents[2]
STATE_ROOT = ROOT / ".cache" / "guests"
PRIVATE_DIRS = ("/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt")


# PID 1 here is not systemd and there is no cgroup delegation, AppArmor, or virtlogd: QEMU runs as
# root without them. Lab-only settings; real hypervisors keep libvirt's defaults.
QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = []
namespaces = []
stdio_handler = "file"
"""


class HypervisorError(RuntimeError):
    """A lab hypervisor could not be started or torn down."""


def _run(argv: list[str], *, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise HypervisorError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return None


def pids_in_netns(inode: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                pids.append(int(entry))
    return pids


@dataclass
class LabHypervisor:
    name: str
    runtime: Path  # socket and pid file
    state: Path  # etc, lib, log, images
    pid: int = 0

    @property
    def socket(self) -> Path:
        return self.runtime / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.socket}"

    @property
    def images(self) -> Path:
        return self.state / "images"

    @property
    def log(self) -> Path:
        return self.state / "log" / "libvirtd.log"

    def connect(self) -> Any:
        return libvirt.open(self.uri)


class LabHypervisors:
    """The two daemons and their shared bridge; a context manager that leaves nothing behind."""

    def __init__(self, names: tuple[str, ...] = ("hv-a", "hv-b"), *, subnet_prefix: str = "10.212.0",
                 prefixlen: int = 24) -> None:
        self.run_id = f"{PREFIX}-{os.getpid()}-{secrets.token_hex(3)}"
        self.netns = self.run_id
        self.client_ip = f"{subnet_prefix}.1"
        self.prefixlen = prefixlen
        self.runtime = Path("/run") / self.run_id
        self.state = STATE_ROOT / self.run_id
        self.hypervisors = {n: LabHypervisor(n, self.runtime / n, self.state / n) for n in names}

    def __getitem__(self, name: str) -> LabHypervisor:
        return self.hypervisors[name]

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> LabHypervisors:
        try:
            self._network()
            for hv in self.hypervisors.values():
                self._start(hv)
                self._default_pool(hv)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _network(self) -> None:
        _run(["ip", "netns", "add", self.netns])
        ns = ["ip", "netns", "exec", self.netns]
        _run([*ns, "ip", "link", "set", "lo", "up"])
        _run([*ns, "ip", "link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0"])
        _run([*ns, "ip", "addr", "add", f"{self.client_ip}/{self.prefixlen}", "dev", BRIDGE])
        _run([*ns, "ip", "link", "set", BRIDGE, "up"])

    def _start(self, hv: LabHypervisor) -> None:
        for sub in ("etc", "lib", "log", "cache", "images"):
            (hv.state / sub).mkdir(parents=True, exist_ok=True)
        hv.runtime.mkdir(parents=True, exist_ok=True)
        (hv.state / "etc" / "libvirtd.conf").write_text(lab_libvirtd_conf(hv.runtime, hv.state / "log"))
        (hv.state / "etc" / "qemu.conf").write_text(QEMU_CONF)
        private = {"/etc/libvirt": hv.state / "etc", "/var/lib/libvirt": hv.state / "lib",
                   "/var/log/libvirt": hv.state / "log", "/var/cache/libvirt": hv.state / "cache"}
        mounts = "".join(f"mkdir -p {target}; mount --bind {source} {target}\n" for target, source in private.items())
        script = (f"set -e\nmount --make-rprivate /\n{mounts}mkdir -p /run/libvirt\n"
                  f"mount -t tmpfs -o mode=0755 tmpfs /run/libvirt\n"
                  f"exec libvirtd -f /etc/libvirt/libvirtd.conf -p {hv.runtime}/libvirtd.pid --timeout 0\n")
        console = (hv.state / "log" / "daemon.out").open("w")
        with console:
            subprocess.Popen(["ip", "netns", "exec", self.netns, "unshare", "--mount", "--propagation", "private",
                              "sh", "-c", script], stdin=subprocess.DEVNULL, stdout=console, stderr=console,
                             start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if hv.socket.exists():
                with contextlib.suppress(libvirt.libvirtError):
                    hv.connect().close()
                    hv.pid = int((hv.runtime / "libvirtd.pid").read_text())
                    return
            time.sleep(0.1)
        tail = (hv.state / "log" / "daemon.out").read_text()[-2000:]
        raise HypervisorError(f"libvirtd for {hv.name} did not answer on {hv.socket} within 30 s: {tail}")

    def _default_pool(self, hv: LabHypervisor) -> None:
        """The storage pool the stack names ('default'): a directory pool in the lab's image dir."""
        conn = hv.connect()
        try:
            pool = conn.storagePoolDefineXML(
                f"<pool type='dir'><name>default</name><target><path>{hv.images}</path></target></pool>")
            pool.setAutostart(1)  # active again when a killed daemon is restarted
            pool.create()
        finally:
            conn.close()

    def kill_daemon_and_guests(self, name: str) -> float:
        """A whole hypervisor lost: SIGKILL its daemon and every QEMU it started. Returns the instant."""
        hv = self.hypervisors[name]
        return _sigkill([hv.pid] + [p for p in self._pids() if self._started_by(p, hv)])

    def kill_guest(self, domain: str) -> float:
        """One guest's power cut that takes effect at once: SIGKILL the QEMU running `domain` (libvirt
        then sees its monitor close and marks the domain shut off). Returns the instant."""
        victims = [p for p in self._pids() if f"guest={domain}," in _cmdline(p)]
        if not victims:
            raise HypervisorError(f"no QEMU process runs {domain}")
        return _sigkill(victims)

    def restart_daemon(self, name: str) -> None:
        self._start(self.hypervisors[name])

    @staticmethod
    def _started_by(pid: int, hv: LabHypervisor) -> bool:
        """QEMU processes keep their monitor socket and logs under the daemon's private dirs."""
        cmdline = _cmdline(pid)
        return "qemu-system" in cmdline and str(hv.state) in cmdline

    def _pids(self) -> list[int]:
        inode = netns_inode(self.netns)
        return [] if inode is None else pids_in_netns(inode)

    def close(self) -> None:
        """Kill everything in the namespace by PID, delete it, remove the directories."""
        deadline = time.monotonic() + 20
        while (pids := self._pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        if netns_inode(self.netns) is not None:
            _run(["ip", "netns", "del", self.netns], check=False)
        shutil.rmtree(self.runtime, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)

    def leftovers(self) -> list[str]:
        found = []
        if netns_inode(self.netns) is not None:
            found.append(f"network namespace {self.netns}")
        found += [f"process {p}" for p in self._pids()]
        found += [f"directory {d}" for d in (self.runtime, self.state) if d.exists()]
        for pid in (hv.pid for hv in self.hypervisors.values() if hv.pid):
            if Path(f"/proc/{pid}").exists():
                found.append(f"libvirtd {pid}")
        return found

    def netns_argv(self, argv: list[str]) -> list[str]:
        """Run `argv` as the operator's workstation (inside the lab namespace, on the bridge)."""
        return ["ip", "netns", "exec", self.netns, *argv]


def cleanup_stale() -> list[str]:
    """Remove namespaces and directories of earlier runs whose owner process is gone."""
    removed = []
    names = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    dirs = [p.name for p in STATE_ROOT.iterdir()] if STATE_ROOT.is_dir() else []
    for name in sorted(set(names) | set(dirs)):
        if not name.startswith(PREFIX + "-"):
            continue
        owner = name.split("-")[1]
        if owner.isdigit() and Path(f"/proc/{owner}").exists():
            continue
        inode = netns_inode(name)
        if inode is not None:
            for pid in pids_in_netns(inode):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            _run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(STATE_ROOT / name, ignore_errors=True)
        shutil.rmtree(Path("/run") / name, ignore_errors=True)
        removed.append(name)
    return removed


def _cmdline(pid: int) -> str:
    """A process's command line ('' once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _sigkill(pids: list[int]) -> float:
    """SIGKILL every process (one already gone is no error); the instant, taken just before."""
    started = time.monotonic()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return started
