"""A lab of isolated Linux "hosts" on one machine, reached over real SSH.

Why: the bootstrap scripts (HAProxy + keepalived pair, external etcd) must be
tested against real daemons, a real VRRP network and a real SSH hop, and the
test machine has no hardware virtualisation.  So each "host" is a set of
Linux namespaces:

* network namespace - its own eth0 (a veth into a bridge), routes, sysctls,
  VRRP multicast; no route out, so lab traffic can only reach lab addresses;
* mount namespace   - private copy-on-write (overlayfs) /etc /var /opt /run
  /usr/local /srv, a /root that starts as a fresh Debian home, a private
  tmpfs /tmp, so one host's writes are invisible to other hosts and to the
  machine; /proc/sys is read-only except net.* (the rest is machine-global);
* PID namespace     - `pkill`, `pidof` and daemons' PID files see only the
  host's own processes; killing its init takes everything in it down;
* UTS namespace     - its own hostname (etcd's unit uses %H);
* IPC namespace     - its own SysV IPC / POSIX message queues.

The bridge lives in a namespace of its own, as does the "client" (the
operator's workstation), so nothing is added to the machine's main network
namespace.  Each host runs its own sshd with a host key the caller generated
and pins (StrictHostKeyChecking=yes; never trust-on-first-use).  A systemctl
stand-in (systemctl_shim.py) is installed in each host, because there is no
systemd in a namespace.  Teardown kills by PID and removes every namespace and
directory, also after a failed setup; `cleanup_stale` clears runs that crashed.
See docs/lab.md.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

STD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PRIVATE_DIRS = ("etc", "var", "root", "opt", "run", "usr/local", "srv")
SHIM = Path(__file__).with_name("systemctl_shim.py")
NETNS_DIR = Path("/run/netns")
DEFAULT_PREFIX = "k8slab"
FIRST_HOST_OFFSET = 11  # .2 is the client, .11... the hosts, .200... spare (VIPs)
SPARE_OFFSET = 200
BIG_SCRIPT = 64 << 10
_RUN_FROM_STDIN = 'f=$(mktemp) && cat > "$f" && bash "$f" </dev/null; rc=$?; rm -f "$f"; exit $rc'
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")

# Runs as PID 1 of a host's PID namespace: starts sshd and reaps orphans (the
# shim's detached supervisors end up here).  It exits when sshd exits.
_INIT = """
import os, subprocess, sys
open("/proc/self/comm", "w").write("lab-init")  # so `pgrep python3` finds daemons only
sshd = subprocess.Popen(sys.argv[1:])
while True:
    pid, status = os.wait()
    if pid == sshd.pid:
        sys.exit(f"lab init: sshd exited ({status})")
"""

# Runs inside the new namespaces before the init: private views, then sshd.
# $1 host state dir, $2 hostname, $3 init program, $4 lower dir for /root.
_BOOT = r"""
set -eu
state=$1
hostname "$2"
for d in @PRIVATE_DIRS@; do
  lower=/$d; [ "$d" = root ] && lower=$4
  mount -t overlay "lab-$d" -o "lowerdir=$lower,upperdir=$state/upper/$d,workdir=$state/work/$d" "/$d"
done
mount -t tmpfs -o mode=1777 lab-tmp /tmp
mount -t tmpfs -o mode=1777 lab-shm /dev/shm
# kernel.* vm.* fs.* are global to the machine: only net.* (per netns) stays writable.
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount --bind /proc/sys/net /proc/sys/net
mount -o remount,bind,rw /proc/sys/net
mount -o remount,bind,ro /sys
if [ -e /usr/bin/systemctl ]; then mount --bind /usr/local/sbin/systemctl /usr/bin/systemctl; fi
mkdir -p /run/sshd /run/lab
exec /usr/bin/python3 -c "$3" /usr/sbin/sshd -D -e -f /etc/ssh/lab/sshd_config
""".replace("@PRIVATE_DIRS@", " ".join(PRIVATE_DIRS))

_SSHD_CONFIG = """\
ListenAddress {ip}:22
HostKey /etc/ssh/lab/ssh_host_ed25519_key
PidFile /run/lab/sshd.pid
PermitRootLogin prohibit-password
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AuthorizedKeysFile .ssh/authorized_keys
X11Forwarding no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp internal-sftp
"""


class LabError(RuntimeError):
    """The lab could not be set up or torn down."""


class LabCommandError(subprocess.CalledProcessError):
    """A command in the lab failed; unlike CalledProcessError, shows its output."""

    def __str__(self) -> str:
        return (f"{super().__str__()}\n--- stdout ---\n{self.stdout or ''}"
                f"\n--- stderr ---\n{self.stderr or ''}")


@dataclass(frozen=True)
class SshKey:
    """An ed25519 key pair: a host key (pinned by the client) or the client's key."""

    private_key: Path
    public_key: str  # "ssh-ed25519 AAAA... comment"

    @classmethod
    def generate(cls, path: Path, comment: str = "lab") -> SshKey:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                        "-f", str(path)], check=True)
        return cls(path, Path(f"{path}.pub").read_text().strip())


@dataclass(frozen=True)
class HostSpec:
    """What the caller decides about a host: its name and its SSH host key."""

    name: str
    host_key: SshKey


def _run(argv: list[str], *, stdin: str | None = None, check: bool = True,
         timeout: float = 60.0, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    """subprocess.run with text I/O and an error that shows the output."""
    result = subprocess.run(argv, input=stdin if stdin is not None else "", text=True,
                            capture_output=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise LabCommandError(result.returncode, argv, result.stdout, result.stderr)
    return result


def _ip_batch(lines: list[str], netns: str | None = None) -> None:
    """Many `ip` commands in one process: setup cost is mostly process starts."""
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    _run([*prefix, "-batch", "-"], stdin="\n".join(lines) + "\n")


def _host_env() -> dict[str, str]:
    """The environment processes inside a host start with (not the test's)."""
    return {"PATH": STD_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}


@dataclass
class LabHost:
    """One host: a set of namespaces with its own sshd at `ip`:22."""

    name: str
    ip: str
    netns: str
    host_key: SshKey
    lab: Lab = field(repr=False)
    veth: str  # the bridge-side end of the host's eth0
    state_dir: Path  # on the machine: overlay upper/work dirs, console log
    process: subprocess.Popen[bytes] | None = None  # `unshare`, parent of the init
    init_pid: int = 0  # PID (machine view) of the host's PID-namespace init

    def ssh_command(self, *, known_hosts: Path | None = None) -> list[str]:
        """argv that opens SSH to this host from the client namespace, key pinned."""
        pinned = known_hosts or self.lab.known_hosts
        return ["ip", "netns", "exec", self.lab.client_netns, "ssh", "-F", "/dev/null",
                "-i", str(self.lab.client_key.private_key), "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={pinned}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                "-o", "HostKeyAlgorithms=ssh-ed25519", "-o", "ConnectTimeout=5",
                # The post-quantum default kex costs ~70 ms CPU per connection here.
                "-o", "KexAlgorithms=curve25519-sha256",
                "-o", "LogLevel=ERROR", f"root@{self.ip}"]

    def run(self, script: str, *, stdin: str | None = None, check: bool = True,
            timeout: float = 120.0, known_hosts: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
        """Run a bash script as root over real SSH; `stdin` feeds the script's stdin.

        The script travels as `bash -c SCRIPT`; one above 64 KiB (the kernel
        caps a single argument at 128 KiB) goes to a temp file via stdin.
        """
        remote = f"bash -c {shlex.quote(script)}"
        if len(script.encode()) > BIG_SCRIPT:
            if stdin is not None:
                raise ValueError("a script above 64 KiB cannot also take stdin")
            remote, stdin = _RUN_FROM_STDIN, script
        argv = [*self.ssh_command(known_hosts=known_hosts), remote]
        return _run(argv, stdin=stdin, check=check, timeout=timeout, env=_client_env())

    def exec_local(self, argv: list[str], *, stdin: str | None = None, check: bool = True,
                   timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run argv inside all of the host's namespaces, bypassing SSH (for drills)."""
        nsenter = ["nsenter", "-t", str(self.init_pid), "-m", "-u", "-i", "-n", "-p",
                   "--wd=/", "--"]
        return _run([*nsenter, *argv], stdin=stdin, check=check, timeout=timeout,
                    env=_host_env())

    def link_down(self) -> None:
        """Cut the host off the bridge (its eth0 loses carrier): simulates host loss."""
        _run(["ip", "-n", self.lab.bridge_netns, "link", "set", self.veth, "down"])

    def link_up(self) -> None:
        _run(["ip", "-n", self.lab.bridge_netns, "link", "set", self.veth, "up"])

    def addresses(self) -> list[str]:
        """IPv4 addresses on eth0, e.g. to see whether a VRRP VIP sits here."""
        out = _run(["ip", "-n", self.netns, "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
        return [line.split()[3].split("/")[0] for line in out.splitlines()]

    def pids(self, name: str) -> list[int]:
        """PIDs (as seen inside the host) of processes named exactly `name`."""
        out = self.exec_local(["pgrep", "-x", name], check=False).stdout
        return [int(pid) for pid in out.split()]


def _client_env() -> dict[str, str]:
    """The test's environment minus proxies: lab addresses are never proxied."""
    return {k: v for k, v in os.environ.items() if k not in PROXY_VARS}


class Lab:
    """Context manager: a bridge, a client namespace and SSH-reachable hosts.

    Names: every namespace and the state directory start with
    ``{prefix}-{pid}-{random}``; the owner PID lets `cleanup_stale` tell a
    crashed run from a live one.  Addresses: client .2, hosts .11 upwards,
    `spare_ip(i)` (.200 upwards) is free for VIPs.
    """

    def __init__(self, hosts: list[HostSpec], client_key: SshKey, *,
                 subnet: str = "10.211.0.0/24", prefix: str = DEFAULT_PREFIX,
                 base_dir: Path | None = None) -> None:
        if not prefix.isalnum():
            raise ValueError("prefix must be alphanumeric (it is parsed back by cleanup_stale)")
        names = [h.name for h in hosts]
        if len(set(names)) != len(names) or not all(_valid_hostname(n) for n in names):
            raise ValueError(f"host names must be unique [a-z0-9-] labels: {names}")
        self.network = ipaddress.IPv4Network(subnet)
        if self.network.num_addresses < 256 or len(hosts) > SPARE_OFFSET - FIRST_HOST_OFFSET:
            raise ValueError("the lab needs at least a /24 and at most 189 hosts")
        self.prefix = prefix
        self.run_name = f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"
        self.dir = (base_dir or default_base_dir()) / self.run_name
        self.bridge_netns = f"{self.run_name}-br"
        self.client_netns = f"{self.run_name}-client"
        self.client_ip = str(self.network[2])
        self.client_key = client_key
        self.known_hosts = self.dir / "known_hosts"
        self.hosts: dict[str, LabHost] = {}
        for i, spec in enumerate(hosts):
            self.hosts[spec.name] = LabHost(
                name=spec.name, ip=str(self.network[FIRST_HOST_OFFSET + i]),
                netns=f"{self.run_name}-h-{spec.name}", host_key=spec.host_key, lab=self,
                veth=f"h{i}", state_dir=self.dir / "hosts" / spec.name)
        self._namespace_inodes: set[int] = set()
        self._closed = False

    def __getitem__(self, name: str) -> LabHost:
        return self.hosts[name]

    def spare_ip(self, index: int) -> str:
        """An address in the lab subnet that no lab node uses (e.g. a VRRP VIP)."""
        return str(self.network[SPARE_OFFSET + index])

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    def client_argv(self, argv: list[str]) -> list[str]:
        """argv wrapped to run in the client namespace (for Popen of long runs)."""
        return ["ip", "netns", "exec", self.client_netns, *argv]

    def client_run(self, argv: list[str], *, stdin: str | None = None, check: bool = True,
                   timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run argv in the client namespace (curl, etcdctl, ssh... against lab IPs).

        Lab addresses are reachable only from here and from the hosts: from the
        machine's own namespace they would be routed out of the machine.
        """
        return _run(self.client_argv(argv), stdin=stdin, check=check, timeout=timeout,
                    env=_client_env())

    # ----------------------------------------------------------------- setup
    def __enter__(self) -> Lab:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _setup(self) -> None:
        self.dir.mkdir(parents=True)
        self.known_hosts.write_text("".join(
            f"{h.ip} {h.host_key.public_key}\n" for h in self.hosts.values()))
        self._create_network()
        self._make_root_home()
        for host in self.hosts.values():
            self._prepare_filesystem(host)
            self._boot(host)
        for host in self.hosts.values():
            self._wait_ready(host)

    def _create_network(self) -> None:
        nodes = [(self.client_netns, "c0", self.client_ip)]
        nodes += [(h.netns, h.veth, h.ip) for h in self.hosts.values()]
        _ip_batch([f"netns add {self.bridge_netns}"] + [f"netns add {ns}" for ns, _, _ in nodes])
        self._namespace_inodes = {
            (NETNS_DIR / ns).stat().st_ino for ns in [self.bridge_netns, *(n[0] for n in nodes)]}
        bridge = ["link set lo up", "link add br0 type bridge", "link set br0 up"]
        for ns, veth, _ in nodes:
            bridge += [f"link add {veth} type veth peer name eth0 netns {ns}",
                       f"link set {veth} master br0 up"]
        _ip_batch(bridge, self.bridge_netns)
        for ns, _, ip in nodes:  # quickack: no 40 ms delayed-ACK stalls in SSH handshakes
            _ip_batch(["link set lo up", f"addr add {ip}/{self.prefixlen} dev eth0 noprefixroute",
                       "link set eth0 up", f"route add {self.network} dev eth0 src {ip} quickack 1"], ns)

    def _make_root_home(self) -> None:
        """A fresh Debian /root shared read-only by the hosts' /root overlays.

        Not the machine's /root: its dotfiles (pyenv, cargo on PATH) and
        credentials do not belong on a freshly installed host.
        """
        home = self.dir / "root-home"
        home.mkdir(mode=0o700)
        for dotfile in ("bashrc", "profile"):
            source = Path("/usr/share/base-files", f"dot.{dotfile}")
            if not source.exists():
                source = Path("/etc/skel", f".{dotfile}")
            shutil.copy(source, home / f".{dotfile}")

    def _prepare_filesystem(self, host: LabHost) -> None:
        """Overlay upper dirs, pre-seeded with sshd config, keys and the shim."""
        upper = host.state_dir / "upper"
        for d in PRIVATE_DIRS:
            _mkdir_like(upper / d, Path("/", d))
            (host.state_dir / "work" / d).mkdir(parents=True)
        ssh = upper / "etc/ssh/lab"
        _mkdir_like(ssh, Path("/etc/ssh/lab"))
        (ssh / "sshd_config").write_text(_SSHD_CONFIG.format(ip=host.ip))
        _write_private(ssh / "ssh_host_ed25519_key", host.host_key.private_key.read_text())
        self._install_host_key(host, upper / "etc/ssh")
        _mkdir_like(upper / "root/.ssh", None, mode=0o700)
        _write_private(upper / "root/.ssh/authorized_keys", self.client_key.public_key + "\n")
        (upper / "etc/hostname").write_text(f"{host.name}\n")
        (upper / "etc/hosts").write_text(self._hosts_file())
        for bindir in ("sbin", "bin"):
            target = upper / "usr/local" / bindir
            _mkdir_like(target, Path("/usr/local", bindir))
            shutil.copy(SHIM, target / "systemctl")
            (target / "systemctl").chmod(0o755)

    @staticmethod
    def _install_host_key(host: LabHost, etc_ssh: Path) -> None:
        """The host's key pair where a real host keeps it (/etc/ssh/ssh_host_ed25519_key*, which
        the bootstrap's readiness check compares with the pinned key); the machine's own host
        keys are hidden (overlay whiteouts), so a host presents and holds only its own key."""
        for machine_key in Path("/etc/ssh").glob("ssh_host_*"):
            if not machine_key.name.startswith("ssh_host_ed25519_key"):
                os.mknod(etc_ssh / machine_key.name, 0o600 | stat.S_IFCHR, os.makedev(0, 0))
        _write_private(etc_ssh / "ssh_host_ed25519_key", host.host_key.private_key.read_text())
        (etc_ssh / "ssh_host_ed25519_key.pub").write_text(host.host_key.public_key + "\n")

    def _hosts_file(self) -> str:
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
        lines += [f"{h.ip} {h.name}" for h in self.hosts.values()]
        return "\n".join(lines) + "\n"

    def _boot(self, host: LabHost) -> None:
        with open(host.state_dir / "console.log", "wb") as console:
            host.process = subprocess.Popen(
                ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts", "--ipc",
                 "--pid", "--fork", "--mount-proc", "--propagation", "private",
                 "bash", "-c", _BOOT, "boot", str(host.state_dir), host.name, _INIT,
                 str(self.dir / "root-home")],
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                env=_host_env(), start_new_session=True)

    def _wait_ready(self, host: LabHost, timeout: float = 30.0) -> None:
        """Ready = sshd wrote its PID file (it does so after binding port 22)."""
        assert host.process is not None
        pidfile = host.state_dir / "upper/run/lab/sshd.pid"
        deadline = time.monotonic() + timeout
        while not (pidfile.exists() and host.init_pid):
            if host.process.poll() is not None or time.monotonic() > deadline:
                log = (host.state_dir / "console.log").read_text(errors="replace")
                raise LabError(f"host {host.name} did not come up:\n{log}")
            host.init_pid = host.init_pid or next(iter(_children(host.process.pid)), 0)
            time.sleep(0.01)
        self._namespace_inodes |= _namespace_inodes_of(host.init_pid)

    # -------------------------------------------------------------- teardown
    def close(self) -> None:
        """Kill every lab process, delete every namespace and the state dir."""
        if self._closed:
            return
        self._closed = True
        processes = [h.process for h in self.hosts.values() if h.process]
        _teardown([self.bridge_netns, self.client_netns, *(h.netns for h in self.hosts.values())],
                  self.dir, processes)

    def leftovers(self) -> list[str]:
        """What of this lab still exists (for asserting a clean teardown)."""
        found = [f"netns {ns}" for ns in _list_netns() if ns.startswith(self.run_name)]
        found += [f"dir {self.dir}"] if self.dir.exists() else []
        pids = [h.init_pid for h in self.hosts.values() if h.init_pid]
        pids += [h.process.pid for h in self.hosts.values() if h.process]
        found += [f"process {pid}" for pid in pids if _alive(pid)]
        for pid in _all_pids():
            if self._namespace_inodes & _namespace_inodes_of(pid):
                found.append(f"process {pid} in a lab namespace")
            if str(self.dir) in _read(f"/proc/{pid}/mountinfo"):
                found.append(f"mount of {self.dir} in the mount namespace of process {pid}")
        return found


def default_base_dir() -> Path:
    """/dev/shm when it is a roomy tmpfs, else /tmp.

    The hosts' overlay upper dirs live here.  On tmpfs, fsync (etcd!) is free
    and teardown is instant; this machine's ext4 is mounted with `discard`,
    which makes every rmdir cost milliseconds.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        stat = os.statvfs(shm)
        if stat.f_bavail * stat.f_frsize > 2 << 30:
            return shm
    return Path("/tmp")


def cleanup_stale(prefix: str = DEFAULT_PREFIX, base_dir: Path | None = None) -> list[str]:
    """Remove namespaces and dirs of labs whose owner process is gone (a crashed run).

    Labs of live processes (e.g. a parallel test run) are left alone.
    """
    base_dir = base_dir or default_base_dir()
    stale: set[str] = set()
    candidates = _list_netns() + [p.name for p in base_dir.glob(f"{prefix}-*")]
    for name in candidates:
        parts = name.split("-")
        if len(parts) >= 3 and parts[0] == prefix and parts[1].isdigit() and not _alive(int(parts[1])):
            stale.add("-".join(parts[:3]))
    for run_name in sorted(stale):
        namespaces = [ns for ns in _list_netns() if ns.startswith(f"{run_name}-")]
        _teardown(namespaces, base_dir / run_name, [])
    return sorted(stale)


def _teardown(namespaces: list[str], directory: Path,
              processes: list[subprocess.Popen[bytes]]) -> None:
    """Kill by PID everything in the namespaces, delete them, remove the directory.

    Killing a host's init (PID 1 of its PID namespace) kills everything in that
    namespace, and with the last process the private mounts (the overlays) go.
    """
    existing = [ns for ns in namespaces if (NETNS_DIR / ns).exists()]
    inodes = {(NETNS_DIR / ns).stat().st_ino for ns in existing}
    for attempt in range(200):
        victims = [pid for pid in _all_pids() if inodes & _namespace_inodes_of(pid)]
        victims += [p.pid for p in processes if p.poll() is None]
        if not victims:
            break
        for pid in victims:  # `unshare` reaps its init (no zombies): let it exit by itself
            if attempt > 20 or _read(f"/proc/{pid}/comm").strip() != "unshare":
                _kill(pid)
        time.sleep(0.05)
    else:
        raise LabError(f"could not kill lab processes in {existing}")
    if existing:
        _run(["ip", "-force", "-batch", "-"], stdin="".join(f"netns del {ns}\n" for ns in existing))
    shutil.rmtree(directory, ignore_errors=True)
    if directory.exists():
        raise LabError(f"could not remove {directory} (is something still mounted?)")


# ---------------------------------------------------------------- /proc helpers
def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _namespace_inodes_of(pid: int) -> set[int]:
    inodes = set()
    for kind in ("net", "mnt", "pid"):
        with contextlib.suppress(OSError):
            inodes.add(os.stat(f"/proc/{pid}/ns/{kind}").st_ino)
    return inodes


def _children(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (this kernel has no /proc/PID/task/TID/children)."""
    found = []
    for child in _all_pids():
        stat = _read(f"/proc/{child}/stat")
        if stat and int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(child)
    return found


def _alive(pid: int) -> bool:
    stat = _read(f"/proc/{pid}/stat")
    return bool(stat) and stat.rpartition(")")[2].split()[0] != "Z"


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _list_netns() -> list[str]:
    return sorted(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else []


def _valid_hostname(name: str) -> bool:
    return 0 < len(name) <= 30 and name[0].isalpha() and all(
        c.isdigit() or c == "-" or ("a" <= c <= "z") for c in name)


def _mkdir_like(path: Path, model: Path | None, mode: int = 0o755) -> None:
    """mkdir -p, giving each new dir the owner/mode of the machine's same dir.

    An overlay's merged directory takes its attributes from the upper dir, so
    a plain mkdir would turn /root (0700) into 0755 inside the host.
    """
    if path.exists():
        return
    _mkdir_like(path.parent, model.parent if model else None, mode)
    path.mkdir()
    if model and model.exists():
        st = model.stat()
        os.chown(path, st.st_uid, st.st_gid)
        path.chmod(st.st_mode & 0o7777)
    else:
        path.chmod(mode)


def _write_private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)
