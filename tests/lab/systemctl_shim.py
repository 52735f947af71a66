#!/usr/bin/python3
"""A small stand-in for `systemctl`, used ONLY inside the test lab (tests/lab).

TEST INFRASTRUCTURE, NOT SYSTEMD, NEVER INSTALLED IN PRODUCTION.

The lab's hosts are namespaces on one machine, not VMs, so no systemd runs in
them; yet the production bootstrap scripts manage haproxy, keepalived and etcd
through `systemctl`.  labhosts.py copies this file into each host's private
/usr/local/sbin (and over /usr/bin/systemctl inside the host's mount namespace)
so those scripts run unchanged.  It reads the unit files systemd would read
(/etc/systemd/system, /run/systemd/system, /lib/systemd/system, plus
UNIT.d/*.conf drop-ins) and implements the subset listed in docs/lab.md.
Anything else fails loudly ("unsupported", exit 1) instead of pretending.

Each long-running unit gets a tiny supervisor process (this file, run as
`systemctl __supervise UNIT`), fully detached from the caller (new session,
std streams to /var/log/shim/UNIT.log) so an SSH command returns at once.  The
supervisor owns the main process, implements Restart=, and on SIGTERM stops the
main process for good.  State is kept in /run/shim/UNIT.{pid,supervisor,
enabled,active,failed,restarts}.
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
import re
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

UNIT_DIRS = [Path(d) for d in ("/etc/systemd/system", "/run/systemd/system",
                               "/lib/systemd/system", "/usr/lib/systemd/system")]
STATE = Path("/run/shim")
LOGS = Path("/var/log/shim")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLEAN_EXITS = {0, -signal.SIGHUP, -signal.SIGINT, -signal.SIGTERM, -signal.SIGPIPE}
YES = {"1", "yes", "true", "on"}
SETTLE = 0.3  # a daemon that dies this fast after start counts as a failed start
FLAGS = {"--now", "--quiet", "-q", "--value", "--no-block", "--no-pager", "--system",
         "--full", "-l", "--no-legend", "--no-ask-password", "--plain"}
VALUED = {"-p": "property", "--property": "property", "-s": "signal",
          "--signal": "signal", "--kill-whom": "kill-whom"}


class Fail(Exception):
    """An error for the caller: message goes to stderr, `code` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Unit:
    """A unit file plus drop-ins; specifiers %n %N %p %i %H %% are expanded."""

    def __init__(self, name: str) -> None:
        self.name = name if "." in name else f"{name}.service"
        stem, _, suffix = self.name.rpartition(".")
        self.prefix, _, self.instance = stem.partition("@")
        template = f"{self.prefix}@.{suffix}" if self.instance else self.name
        self.keys: dict[str, list[str]] = {}
        self.path = next((d / n for n in (self.name, template) for d in UNIT_DIRS
                          if (d / n).is_file()), None)
        dropins: dict[str, Path] = {}
        for directory in reversed(UNIT_DIRS):  # earlier directories win
            for n in (template, self.name):
                for conf in (directory / f"{n}.d").glob("*.conf"):
                    dropins[conf.name] = conf
        if self.path:
            for f in [self.path, *sorted(dropins.values(), key=lambda p: p.name)]:
                self._parse(f.read_text())

    def _parse(self, text: str) -> None:
        """Sections are ignored: the keys we use do not collide across them."""
        for raw in text.replace("\\\n", " ").splitlines():
            line = raw.strip()
            if not line or line[0] in "#;[":
                continue
            key, _, value = line.partition("=")
            value = self._expand(value.strip())
            if value:
                self.keys.setdefault(key.strip(), []).append(value)
            else:  # an empty assignment resets the list (the drop-in idiom)
                self.keys[key.strip()] = []

    def _expand(self, value: str) -> str:
        table = {"n": self.name, "N": self.name.rpartition(".")[0], "p": self.prefix,
                 "i": self.instance, "H": socket.gethostname(), "%": "%"}
        return re.sub(r"%(.)", lambda m: table.get(m[1], m[0]), value)

    def all(self, key: str) -> list[str]:
        return self.keys.get(key, [])

    def get(self, key: str, default: str = "") -> str:
        values = self.all(key)
        return values[-1] if values else default

    def seconds(self, key: str, default: float) -> float:
        value = self.get(key).strip()
        units = {"ms": 0.001, "s": 1.0, "sec": 1.0, "min": 60.0, "": 1.0}
        match = re.fullmatch(r"([\d.]+)\s*(ms|s|sec|min|)", value)
        return float(match[1]) * units[match[2]] if match else default

    @property
    def type(self) -> str:
        return self.get("Type", "simple")


# ---------------------------------------------------------------- state files
def state(unit: str, kind: str) -> Path:
    return STATE / f"{unit}.{kind}"


def write(unit: str, kind: str, text: str = "") -> None:
    tmp = state(unit, f"{kind}.tmp")
    tmp.write_text(text)
    tmp.rename(state(unit, kind))


def clear(unit: str, *kinds: str) -> None:
    for kind in kinds:
        state(unit, kind).unlink(missing_ok=True)


def read_pid(unit: str, kind: str = "pid") -> int:
    try:
        return int(state(unit, kind).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def alive(pid: int) -> bool:
    """True for a running (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text() if pid > 0 else ""
    except OSError:
        return False
    return bool(stat) and stat.rpartition(")")[2].split()[0] != "Z"


def wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@contextmanager
def locked(unit: str) -> Iterator[None]:
    """Serialise concurrent systemctl calls on one unit, as systemd's job queue does."""
    with open(state(unit, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def log_file(unit: str) -> int:
    return os.open(LOGS / f"{unit}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)


def log(unit: str, message: str) -> None:
    fd = log_file(unit)
    os.write(fd, f"{time.strftime('%H:%M:%S')} shim: {message}\n".encode())
    os.close(fd)


def log_tail(unit: str, lines: int = 15) -> str:
    try:
        return "\n".join((LOGS / f"{unit}.log").read_text().splitlines()[-lines:])
    except OSError:
        return ""


def status_of(u: Unit) -> str:
    n = u.name
    recorded = n.endswith(".timer") or u.type == "oneshot"
    if state(n, "active").exists() if recorded else alive(read_pid(n)):
        return "active"
    if alive(read_pid(n, "supervisor")):
        return "activating"  # waiting RestartSec= between two runs
    return "failed" if state(n, "failed").exists() else "inactive"


# ------------------------------------------------------------ running commands
def environment(u: Unit) -> dict[str, str]:
    """Clean environment + Environment= + EnvironmentFile= (files win, as in systemd)."""
    env = {"PATH": PATH, "LANG": "C.UTF-8"}
    for spec in u.all("Environment"):
        env.update(item.partition("=")[::2] for item in shlex.split(spec))
    for spec in u.all("EnvironmentFile"):
        path = Path(spec.lstrip("-"))
        try:
            text = path.read_text()
        except OSError:
            if spec.startswith("-"):
                continue
            raise Fail(f"Failed to load environment file {path}") from None
        for line in text.splitlines():
            key, eq, value = line.strip().partition("=")
            if eq and not key.startswith("#"):
                env[key.strip()] = value.strip().strip("\"'")
    return env


def expand(words: list[str], env: dict[str, str]) -> list[str]:
    """A lone $VAR splits into words; ${VAR} or $VAR inside a word does not."""
    out: list[str] = []
    for word in words:
        lone = re.fullmatch(r"\$(\w+)", word)
        if lone:
            out += env.get(lone[1], "").split()
        else:
            out.append(re.sub(r"\$\{(\w+)\}|\$(\w+)",
                              lambda m: env.get(m[1] or m[2], ""), word))
    return out


def spawn(u: Unit, line: str, env: dict[str, str], *, main: bool) -> subprocess.Popen[bytes]:
    """Start one Exec*= line detached, output to the unit's log (prefixes: - @ + ! :)."""
    flags = re.match(r"[-@+!:]*", line)[0]  # type: ignore[index]
    words = shlex.split(line[len(flags):])
    argv = words if ":" in flags else expand(words, env)
    exe = argv[0]
    argv = argv[1:] if "@" in flags else argv
    root_only = not main and u.get("PermissionsStartOnly").lower() in YES
    user = "" if ("+" in flags or "!" in flags or root_only) else u.get("User")
    creds: dict[str, object] = {}
    if user:
        pw = pwd.getpwnam(user)
        group = u.get("Group") or grp.getgrgid(pw.pw_gid).gr_name
        creds = {"user": pw.pw_uid, "group": grp.getgrnam(group).gr_gid,
                 "extra_groups": [g.gr_gid for g in grp.getgrall() if user in g.gr_mem]}
        env = env | {"HOME": pw.pw_dir, "USER": user, "LOGNAME": user, "SHELL": pw.pw_shell}
    workdir = u.get("WorkingDirectory", "/").lstrip("-")
    if workdir == "~":
        workdir = env.get("HOME", "/root")
    fd = log_file(u.name)
    try:
        return subprocess.Popen(argv, executable=exe, env=env, cwd=workdir,  # type: ignore[call-overload, no-any-return]
                                stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                start_new_session=True, **creds)
    finally:
        os.close(fd)


def run_sync(u: Unit, key: str, env: dict[str, str]) -> None:
    """Run every KEY= line in order, waiting for each; a '-' prefix ignores failure."""
    for line in u.all(key):
        rc = spawn(u, line, env, main=key == "ExecStart").wait()
        if rc != 0 and not line.lstrip("@+!:").startswith("-"):
            log(u.name, f"{key} failed with status {rc}: {line}")
            raise Fail(job_failed(u))


def job_failed(u: Unit) -> str:
    return (f"Job for {u.name} failed.\nSee /var/log/shim/{u.name}.log "
            f"(last lines below).\n{log_tail(u.name)}")


# ------------------------------------------------------------------ supervisor
def should_restart(u: Unit, rc: int) -> bool:
    clean = rc in CLEAN_EXITS or str(rc) in u.get("SuccessExitStatus").split()
    signalled = rc < 0 and not clean
    return {"always": True, "on-success": clean, "on-failure": not clean,
            "on-abnormal": signalled, "on-abort": signalled}.get(u.get("Restart", "no"), False)


def supervise(u: Unit) -> None:
    """Run the main process; restart it per Restart=; SIGTERM means 'stop for good'."""
    n, env, stopping = u.name, environment(u), False
    child: subprocess.Popen[bytes] | None = None

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    nofile = u.get("LimitNOFILE")
    if nofile.isdigit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (int(nofile), int(nofile)))
    starts: list[float] = []
    rc, gave_up = 0, False
    while not stopping:
        now = time.monotonic()
        starts = [t for t in starts if t > now - u.seconds("StartLimitIntervalSec", 10)]
        if len(starts) >= int(u.get("StartLimitBurst", "5")):
            log(n, "start request repeated too quickly, giving up (start-limit-hit)")
            gave_up = True
            break
        starts.append(now)
        child = spawn(u, u.get("ExecStart"), env, main=True)
        write(n, "pid", str(child.pid))
        log(n, f"started main process {child.pid}")
        if stopping:  # SIGTERM raced with the spawn
            child.send_signal(signal.SIGTERM)
        rc = child.wait()
        clear(n, "pid")
        if u.get("KillMode") != "process":  # control-group: leftovers die with main
            _killpg(child.pid, signal.SIGKILL)
        log(n, f"main process {child.pid} exited, status {rc}")
        if stopping or not should_restart(u, rc):
            break
        write(n, "restarts", str(read_pid(n, "restarts") + 1))
        deadline = time.monotonic() + u.seconds("RestartSec", 0.1)
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.05)
    if not stopping and (gave_up or rc not in CLEAN_EXITS):
        write(n, "failed")
    clear(n, "supervisor")


def _killpg(pid: int, sig: int) -> None:
    with suppress(OSError):
        os.killpg(pid, sig)


# -------------------------------------------------------------------- commands
def check_conditions(u: Unit) -> bool:
    tests: dict[str, Callable[[str], bool]] = {
             "ConditionPathExists": os.path.exists,
             "ConditionPathIsDirectory": os.path.isdir,
             "ConditionFileNotEmpty": lambda p: os.path.isfile(p) and os.path.getsize(p) > 0}
    for key, test in tests.items():
        for spec in u.all(key):
            negate = spec.startswith("!")
            if test(spec.lstrip("!")) == negate:
                log(u.name, f"condition failed: {key}={spec}; start skipped")
                return False
    return True


def make_dirs(u: Unit) -> None:
    """RuntimeDirectory=, StateDirectory=, LogsDirectory=, owned by User=."""
    user = u.get("User")
    for key, base in (("RuntimeDirectory", "/run"), ("StateDirectory", "/var/lib"),
                      ("LogsDirectory", "/var/log")):
        for name in " ".join(u.all(key)).split():
            path = Path(base, name)
            path.mkdir(parents=True, exist_ok=True)
            if user:
                pw = pwd.getpwnam(user)
                os.chown(path, pw.pw_uid, pw.pw_gid)


def start(u: Unit) -> None:
    n = u.name
    if n.endswith(".timer"):  # recorded only; trigger the job with `start x.service`
        write(n, "active")
        return
    if u.path is None:
        raise Fail(f"Failed to start {n}: Unit {n} not found.", 5)
    if status_of(u) in ("active", "activating") or not check_conditions(u):
        return
    clear(n, "failed", "restarts")
    make_dirs(u)
    env = environment(u)
    run_sync(u, "ExecStartPre", env)
    if u.type == "oneshot":
        run_sync(u, "ExecStart", env)
        if u.get("RemainAfterExit").lower() in YES:
            write(n, "active")
    elif u.type == "forking":
        run_sync(u, "ExecStart", env)
        pidfile = Path(u.get("PIDFile"))
        write(n, "pid", pidfile.read_text().strip() if pidfile.is_file() else "0")
    else:  # simple, exec, notify (no readiness protocol), idle
        start_supervisor(u)
    run_sync(u, "ExecStartPost", env | {"MAINPID": str(read_pid(n))})


def start_supervisor(u: Unit) -> None:
    if not u.get("ExecStart"):
        raise Fail(f"{u.name} has no ExecStart= setting.")
    fd = log_file(u.name)
    sup = subprocess.Popen([sys.executable, os.path.abspath(__file__), "__supervise", u.name],
                           stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                           start_new_session=True)
    os.close(fd)
    write(u.name, "supervisor", str(sup.pid))
    deadline = time.monotonic() + 10
    while not alive(read_pid(u.name)):
        if sup.poll() is not None or time.monotonic() > deadline:
            raise Fail(job_failed(u))
        time.sleep(0.02)
    time.sleep(SETTLE)
    if not alive(read_pid(u.name)):
        raise Fail(job_failed(u))


def stop(u: Unit) -> None:
    n = u.name
    sup, main = read_pid(n, "supervisor"), read_pid(n)
    if alive(main):
        run_sync(u, "ExecStop", environment(u) | {"MAINPID": str(main)})
    target = sup if alive(sup) else main
    if alive(target):
        os.kill(target, signal.SIGTERM)
    if not wait_gone([sup, main], u.seconds("TimeoutStopSec", 10)):
        log(n, "stop timed out; sending SIGKILL")
        _killpg(main, signal.SIGKILL)
        for pid in (main, sup):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        wait_gone([sup, main], 5)
    clear(n, "pid", "supervisor", "active")


def reload(u: Unit) -> None:
    if not u.all("ExecReload"):
        raise Fail(f"Failed to reload {u.name}: Job type reload is not applicable for unit {u.name}.")
    if status_of(u) != "active":
        raise Fail(f"Failed to reload {u.name}: Unit {u.name} is not active.")
    run_sync(u, "ExecReload", environment(u) | {"MAINPID": str(read_pid(u.name))})


def kill(u: Unit, opts: dict[str, str]) -> None:
    name = opts.get("signal", "SIGTERM").upper()
    sig = int(name) if name.isdigit() else signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
    main = read_pid(u.name)
    if not alive(main):
        raise Fail(f"Failed to kill unit {u.name}: No main process to kill")
    if opts.get("kill-whom") == "main":
        os.kill(main, sig)
    else:
        os.killpg(os.getpgid(main), sig)


def show(u: Unit, opts: dict[str, str]) -> None:
    enabled = state(u.name, "enabled").exists()
    values = {"MainPID": str(read_pid(u.name)), "ActiveState": status_of(u),
              "LoadState": "loaded" if u.path else "not-found",
              "UnitFileState": "enabled" if enabled else "disabled",
              "NRestarts": str(read_pid(u.name, "restarts")), "Type": u.type}
    for prop in opts.get("property", ",".join(values)).split(","):
        if prop not in values:
            raise Fail(f"systemctl shim: unsupported property {prop}")
        print(values[prop] if "value" in opts else f"{prop}={values[prop]}")


def status(u: Unit) -> int:
    active = status_of(u)
    print(f"* {u.name} - {u.get('Description', u.name)}\n"
          f"     Loaded: {'loaded (' + str(u.path) + ')' if u.path else 'not-found'}\n"
          f"     Active: {active}\n   Main PID: {read_pid(u.name)}\n\n{log_tail(u.name)}")
    return 4 if u.path is None else (0 if active == "active" else 3)


def restart(u: Unit) -> None:
    stop(u)
    start(u)


def reload_or_restart(u: Unit) -> None:
    if status_of(u) == "active" and u.all("ExecReload"):
        reload(u)
    else:
        restart(u)


def enable(u: Unit, now: bool) -> None:
    if u.path is None and not u.name.endswith(".timer"):
        raise Fail(f"Failed to enable unit: Unit file {u.name} does not exist.")
    write(u.name, "enabled")
    if now:
        start(u)


def disable(u: Unit, now: bool) -> None:
    clear(u.name, "enabled")
    if now:
        stop(u)


# Commands that change a unit; each runs under the unit's lock.
ACTIONS: dict[str, Callable[[Unit, dict[str, str]], None]] = {
    "start": lambda u, o: start(u),
    "stop": lambda u, o: stop(u),
    "restart": lambda u, o: restart(u),
    "try-restart": lambda u, o: restart(u) if status_of(u) == "active" else None,
    "reload": lambda u, o: reload(u),
    "reload-or-restart": lambda u, o: reload_or_restart(u),
    "enable": lambda u, o: enable(u, "now" in o),
    "disable": lambda u, o: disable(u, "now" in o),
    "kill": kill,
    "reset-failed": lambda u, o: clear(u.name, "failed"),
}
QUERIES = {"is-active": "active", "is-failed": "failed", "is-enabled": "enabled"}


def one(command: str, u: Unit, opts: dict[str, str]) -> int:
    """Apply one command to one unit; returns the exit status systemctl would."""
    if command in QUERIES:
        enabled = "enabled" if state(u.name, "enabled").exists() else "disabled"
        word = enabled if command == "is-enabled" else status_of(u)
        if "quiet" not in opts:
            print(word)
        return 0 if word == QUERIES[command] else (1 if command == "is-enabled" else 3)
    if command == "status":
        return status(u)
    if command == "show":
        show(u, opts)
        return 0
    if command not in ACTIONS:
        raise Fail(f"systemctl shim: unsupported command {command!r}")
    with locked(u.name):
        ACTIONS[command](u, opts)
    return 0


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    opts: dict[str, str] = {}
    args: list[str] = []
    it = iter(argv)
    for arg in it:
        key, eq, value = arg.partition("=")
        if arg in FLAGS:
            opts["quiet" if arg == "-q" else arg.lstrip("-")] = ""
        elif key in VALUED:
            name = VALUED[key]
            value = value if eq else next(it, "")
            opts[name] = f"{opts[name]},{value}" if name in opts else value
        elif arg.startswith("-"):
            raise Fail(f"systemctl shim: unsupported option {arg!r}")
        else:
            args.append(arg)
    return opts, args


def main(argv: list[str]) -> int:
    opts, args = parse(argv)
    if not args:
        raise Fail("systemctl shim: a command is required (see docs/lab.md)")
    command, names = args[0], args[1:]
    STATE.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    if command == "__supervise":
        supervise(Unit(names[0]))
        return 0
    if command in ("daemon-reload", "daemon-reexec"):
        return 0  # units are re-read on every call anyway
    if not names:
        raise Fail(f"systemctl shim: {command!r} needs a unit name")
    return max(one(command, Unit(name), opts) for name in names)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Fail as error:
        print(error, file=sys.stderr)
        sys.exit(error.code)
