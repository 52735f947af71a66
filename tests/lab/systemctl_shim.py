#!/usr/bin/python3
"""A small stand-in for `systemctl`, used ONLY inside the test lab (tests/lab).

TEST INFRASTRUCTURE, NOT SYSTEMD, NEVER INSTALLED IN PRODUCTION.

The lab's hosts are namespaces on one machine, not VMs, so no systemd runs in
them; yet the production bootstrap scripts manage haproxy, keepalived and etcd
with `systemctl`.  labhosts.py installs this file as each host's
/usr/local/sbin/systemctl (and binds it over /usr/bin/systemctl inside the
host) so those scripts run unchanged.  It reads the unit files systemd would
(/etc/systemd/system, /run/systemd/system, /lib/systemd/system and their
UNIT.d/*.conf drop-ins) and implements the subset listed in docs/lab.md;
anything else fails loudly (exit 1, "unsupported") instead of pretending.

A long-running unit gets a tiny supervisor (this file run as `systemctl
__supervise UNIT`), detached from the caller (new session, std streams to
/var/log/shim/UNIT.log) so an SSH command returns at once.  The supervisor
owns the main process and implements Restart=; SIGTERM to it means "stop for
good".  State: /run/shim/UNIT.{pid,supervisor,enabled,active,failed,restarts}.
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
STATE, LOGS = Path("/run/shim"), Path("/var/log/shim")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLEAN_EXITS = {0, -signal.SIGHUP, -signal.SIGINT, -signal.SIGTERM, -signal.SIGPIPE}
SUPERVISED = {"simple", "exec", "notify", "idle"}  # notify: no readiness protocol here
SETTLE = 0.3  # a main process that dies this soon after start is a failed start
FLAGS = {"--now", "--quiet", "-q", "--value", "--no-block", "--no-pager", "--system",
         "--full", "-l", "--no-legend", "--no-ask-password", "--plain"}
VALUED = {"-p": "property", "--property": "property", "-s": "signal", "--signal": "signal",
          "--kill-whom": "kill-whom"}


class Fail(Exception):
    """An error for the caller: the message goes to stderr, `code` is the exit status."""

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
        self.path = next((d / n for n in (self.name, template) for d in UNIT_DIRS if (d / n).is_file()), None)
        dropins = {conf.name: conf for d in reversed(UNIT_DIRS)  # same name: /etc wins
                   for n in (template, self.name) for conf in (d / f"{n}.d").glob("*.conf")}
        if self.path:
            for f in [self.path, *sorted(dropins.values(), key=lambda p: p.name)]:
                self._parse(f.read_text())

    def _parse(self, text: str) -> None:
        """Sections are ignored: the keys used here do not collide across them."""
        for raw in text.replace("\\\n", " ").splitlines():
            line = raw.strip()
            if line and line[0] not in "#;[":
                key, _, value = (part.strip() for part in line.partition("="))
                if value:
                    self.keys.setdefault(key, []).append(self._specifiers(value))
                else:  # an empty assignment resets the list (the drop-in idiom)
                    self.keys[key] = []

    def _specifiers(self, value: str) -> str:
        table = {"n": self.name, "N": self.name.rpartition(".")[0], "p": self.prefix,
                 "i": self.instance, "H": socket.gethostname(), "%": "%"}
        return re.sub(r"%(.)", lambda m: table.get(m[1], m[0]), value)

    def all(self, key: str) -> list[str]:
        return self.keys.get(key, [])

    def get(self, key: str, default: str = "") -> str:
        return (self.all(key) or [default])[-1]

    def seconds(self, key: str, default: float) -> float:
        match = re.fullmatch(r"([\d.]+)\s*(ms|s|sec|min|)", self.get(key).strip())
        scale = {"ms": 0.001, "min": 60.0}
        return float(match[1]) * scale.get(match[2], 1.0) if match else default

    @property
    def type(self) -> str:
        return self.get("Type", "simple")


# ---------------------------------------------------------------- state files
def state(unit: str, kind: str) -> Path:
    return STATE / f"{unit}.{kind}"


def write(unit: str, kind: str, text: str = "") -> None:
    state(unit, f"{kind}.tmp").write_text(text)
    state(unit, f"{kind}.tmp").rename(state(unit, kind))


def clear(unit: str, *kinds: str) -> None:
    for kind in kinds:
        state(unit, kind).unlink(missing_ok=True)


def read_int(unit: str, kind: str = "pid") -> int:
    with suppress(OSError, ValueError):
        return int(state(unit, kind).read_text().strip() or 0)
    return 0


def alive(pid: int) -> bool:
    """True for a running (not zombie) process."""
    with suppress(OSError):
        return pid > 0 and Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    return False


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


def log_fd(unit: str) -> int:
    return os.open(LOGS / f"{unit}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)


def log(unit: str, message: str) -> None:
    fd = log_fd(unit)
    os.write(fd, f"{time.strftime('%H:%M:%S')} shim: {message}\n".encode())
    os.close(fd)


def job_failed(u: Unit) -> Fail:
    with suppress(OSError):
        tail = "\n".join((LOGS / f"{u.name}.log").read_text().splitlines()[-15:])
        return Fail(f"Job for {u.name} failed. Last lines of /var/log/shim/{u.name}.log:\n{tail}")
    return Fail(f"Job for {u.name} failed.")


def status_of(u: Unit) -> str:
    recorded = u.name.endswith(".timer") or u.type == "oneshot"
    if state(u.name, "active").exists() if recorded else alive(read_int(u.name)):
        return "active"
    if alive(read_int(u.name, "supervisor")):
        return "activating"  # between two runs, waiting RestartSec=
    return "failed" if state(u.name, "failed").exists() else "inactive"


# ------------------------------------------------------------ running commands
def environment(u: Unit) -> dict[str, str]:
    """A clean environment, then Environment=, then EnvironmentFile= (files win, as in systemd)."""
    env = {"PATH": PATH, "LANG": "C.UTF-8"}
    for spec in u.all("Environment"):
        env.update(item.partition("=")[::2] for item in shlex.split(spec))
    for spec in u.all("EnvironmentFile"):
        path = Path(spec.lstrip("-"))
        if not path.is_file() and spec.startswith("-"):
            continue
        for line in path.read_text().splitlines():
            key, eq, value = line.strip().partition("=")
            if eq and not key.startswith("#"):
                env[key.strip()] = value.strip().strip("\"'")
    return env


def expand(words: list[str], env: dict[str, str]) -> list[str]:
    """A lone $VAR splits into several words; ${VAR} or $VAR inside a word does not."""
    out: list[str] = []
    for word in words:
        lone = re.fullmatch(r"\$(\w+)", word)
        out += env.get(lone[1], "").split() if lone else [
            re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m[1] or m[2], ""), word)]
    return out


def split_prefixes(line: str) -> tuple[str, str]:
    """'-@+!:' prefixes of an Exec line, and the command after them."""
    command = line.lstrip("-@+!:")
    return line[: len(line) - len(command)], command


def spawn(u: Unit, line: str, env: dict[str, str], *, main: bool) -> subprocess.Popen[bytes]:
    """Start one Exec*= line in a new session, output to the unit's log."""
    flags, command = split_prefixes(line)
    argv = shlex.split(command) if ":" in flags else expand(shlex.split(command), env)
    exe, argv = argv[0], argv[1:] if "@" in flags else argv
    as_root = "+" in flags or "!" in flags or (not main and u.get("PermissionsStartOnly") in ("yes", "true"))
    user = "" if as_root else u.get("User")
    creds: dict[str, object] = {}
    if user:
        pw = pwd.getpwnam(user)
        group = u.get("Group") or grp.getgrgid(pw.pw_gid).gr_name
        creds = {"user": pw.pw_uid, "group": grp.getgrnam(group).gr_gid,
                 "extra_groups": [g.gr_gid for g in grp.getgrall() if user in g.gr_mem]}
        env = env | {"HOME": pw.pw_dir, "USER": user, "LOGNAME": user, "SHELL": pw.pw_shell}
    workdir = u.get("WorkingDirectory", "/").lstrip("-").replace("~", env.get("HOME", "/root"))
    fd = log_fd(u.name)
    try:
        return subprocess.Popen(argv, executable=exe, env=env, cwd=workdir,  # type: ignore[call-overload, no-any-return]
                                stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True, **creds)
    finally:
        os.close(fd)


def run_sync(u: Unit, key: str, env: dict[str, str]) -> None:
    """Run each KEY= line in turn and wait for it; a '-' prefix ignores its failure."""
    for line in u.all(key):
        rc = spawn(u, line, env, main=key == "ExecStart").wait()
        if rc != 0 and "-" not in split_prefixes(line)[0]:
            log(u.name, f"{key} failed with status {rc}: {line}")
            raise job_failed(u)


# ------------------------------------------------------------------ supervisor
def should_restart(u: Unit, rc: int) -> bool:
    clean = rc in CLEAN_EXITS or str(rc) in u.get("SuccessExitStatus").split()
    signalled = rc < 0 and not clean
    return {"always": True, "on-success": clean, "on-failure": not clean,
            "on-abnormal": signalled, "on-abort": signalled}.get(u.get("Restart", "no"), False)


def supervise(u: Unit) -> None:
    """Run the main process, restart it per Restart= (rate-limited); SIGTERM stops it for good."""
    n, env, stopping = u.name, environment(u), False
    child: subprocess.Popen[bytes] | None = None

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    if u.get("Nice"):  # inherited by the main process and everything it forks
        os.setpriority(os.PRIO_PROCESS, 0, int(u.get("Nice")))
    if u.get("LimitNOFILE").isdigit():
        set_nofile(n, int(u.get("LimitNOFILE")))
    starts: list[float] = []
    rc, gave_up = 0, False
    while not stopping:
        starts = [t for t in starts if t > time.monotonic() - u.seconds("StartLimitIntervalSec", 10)]
        if gave_up := len(starts) >= int(u.get("StartLimitBurst", "5")):
            log(n, "start request repeated too quickly, giving up (start-limit-hit)")
            break
        starts.append(time.monotonic())
        child = spawn(u, u.get("ExecStart"), env, main=True)
        write(n, "pid", str(child.pid))
        log(n, f"started main process {child.pid}")
        if stopping:  # SIGTERM raced with the spawn
            child.send_signal(signal.SIGTERM)
        rc = child.wait()
        clear(n, "pid")
        if u.get("KillMode") != "process":  # like a cgroup: what the main process left dies too
            killpg(child.pid, signal.SIGKILL)
        log(n, f"main process {child.pid} exited, status {rc}")
        if stopping or not should_restart(u, rc):
            break
        write(n, "restarts", str(read_int(n, "restarts") + 1))
        deadline = time.monotonic() + u.seconds("RestartSec", 0.1)
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.05)
    if not stopping and (gave_up or rc not in CLEAN_EXITS):
        write(n, "failed")
    clear(n, "supervisor")


def set_nofile(unit: str, limit: int) -> None:
    """LimitNOFILE=, capped at the current hard limit where raising it is not allowed."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    except (ValueError, OSError):  # no CAP_SYS_RESOURCE (as on the lab machine)
        log(unit, f"LimitNOFILE={limit} capped at the hard limit {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))


def killpg(pid: int, sig: int) -> None:
    with suppress(OSError):
        os.killpg(pid, sig)


# -------------------------------------------------------------------- commands
CONDITIONS: dict[str, Callable[[str], bool]] = {
    "ConditionPathExists": os.path.exists,
    "ConditionPathIsDirectory": os.path.isdir,
    "ConditionFileNotEmpty": lambda p: os.path.isfile(p) and os.path.getsize(p) > 0,
}


def conditions_met(u: Unit) -> bool:
    for key, test in CONDITIONS.items():
        for spec in u.all(key):
            if test(spec.lstrip("!")) == spec.startswith("!"):
                log(u.name, f"condition failed: {key}={spec}; start skipped")
                return False
    return True


def start(u: Unit) -> None:
    n = u.name
    if n.endswith(".timer"):  # recorded only; a test triggers the job with `start x.service`
        write(n, "active")
        return
    if u.path is None:
        raise Fail(f"Failed to start {n}: Unit {n} not found.", 5)
    if u.type not in SUPERVISED | {"oneshot"}:
        raise Fail(f"systemctl shim: unsupported Type={u.type} in {n}")
    if status_of(u) in ("active", "activating") or not conditions_met(u):
        return
    clear(n, "failed", "restarts")
    env = environment(u)
    run_sync(u, "ExecStartPre", env)
    if u.type == "oneshot":
        run_sync(u, "ExecStart", env)
        if u.get("RemainAfterExit") in ("yes", "true"):
            write(n, "active")
    else:
        start_supervisor(u)
    run_sync(u, "ExecStartPost", env | {"MAINPID": str(read_int(n))})


def start_supervisor(u: Unit) -> None:
    """Detach a supervisor, then wait until its main process has run for SETTLE seconds."""
    if not u.get("ExecStart"):
        raise Fail(f"{u.name} has no ExecStart= setting.")
    fd = log_fd(u.name)
    sup = subprocess.Popen([sys.executable, os.path.abspath(__file__), "__supervise", u.name],
                           stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True)
    os.close(fd)
    write(u.name, "supervisor", str(sup.pid))
    deadline = time.monotonic() + 10
    while not alive(read_int(u.name)):
        if sup.poll() is not None or time.monotonic() > deadline:
            raise job_failed(u)
        time.sleep(0.02)
    time.sleep(SETTLE)
    if not alive(read_int(u.name)):
        raise job_failed(u)


def stop(u: Unit) -> None:
    """ExecStop=, then SIGTERM (via the supervisor), SIGKILL after TimeoutStopSec= (10 s)."""
    n = u.name
    sup, main = read_int(n, "supervisor"), read_int(n)
    if alive(main):
        run_sync(u, "ExecStop", environment(u) | {"MAINPID": str(main)})
    target = sup if alive(sup) else main
    if alive(target):
        os.kill(target, signal.SIGTERM)
    if not wait_gone([sup, main], u.seconds("TimeoutStopSec", 10)):
        log(n, "stop timed out; sending SIGKILL")
        killpg(main, signal.SIGKILL)
        with suppress(OSError):
            os.kill(sup, signal.SIGKILL)
        wait_gone([sup, main], 5)
    clear(n, "pid", "supervisor", "active")


def reload(u: Unit) -> None:
    if not u.all("ExecReload"):
        raise Fail(f"Failed to reload {u.name}: Job type reload is not applicable for unit {u.name}.")
    if status_of(u) != "active":
        raise Fail(f"Failed to reload {u.name}: Unit {u.name} is not active.")
    run_sync(u, "ExecReload", environment(u) | {"MAINPID": str(read_int(u.name))})


def restart(u: Unit) -> None:
    stop(u)
    start(u)


def kill(u: Unit, opts: dict[str, str]) -> None:
    """Signal the main process, or (default, like a cgroup) its whole process group."""
    name = opts.get("signal", "SIGTERM").upper()
    sig = int(name) if name.isdigit() else signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
    main = read_int(u.name)
    if not alive(main):
        raise Fail(f"Failed to kill unit {u.name}: No main process to kill")
    if opts.get("kill-whom") == "main":
        os.kill(main, sig)
    else:
        os.killpg(os.getpgid(main), sig)


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


def show(u: Unit, opts: dict[str, str]) -> int:
    values = {"MainPID": str(read_int(u.name)), "ActiveState": status_of(u), "Type": u.type,
              "LoadState": "loaded" if u.path else "not-found",
              "UnitFileState": "enabled" if state(u.name, "enabled").exists() else "disabled",
              "NRestarts": str(read_int(u.name, "restarts")), "Nice": u.get("Nice", "0")}
    for prop in opts.get("property", ",".join(values)).split(","):
        if prop not in values:
            raise Fail(f"systemctl shim: unsupported property {prop}")
        print(values[prop] if "value" in opts else f"{prop}={values[prop]}")
    return 0


def status(u: Unit) -> int:
    active = status_of(u)
    print(f"* {u.name} - {u.get('Description', u.name)}\n     Loaded: {u.path or 'not-found'}\n"
          f"     Active: {active}\n   Main PID: {read_int(u.name)}\n     Log: /var/log/shim/{u.name}.log")
    return 4 if u.path is None else (0 if active == "active" else 3)


# Commands that change a unit; each runs under the unit's lock.
ACTIONS: dict[str, Callable[[Unit, dict[str, str]], None]] = {
    "start": lambda u, o: start(u),
    "stop": lambda u, o: stop(u),
    "restart": lambda u, o: restart(u),
    "reload": lambda u, o: reload(u),
    "reload-or-restart": lambda u, o: reload(u) if status_of(u) == "active" and u.all("ExecReload") else restart(u),
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
    if command in ("show", "status"):
        return show(u, opts) if command == "show" else status(u)
    if command not in ACTIONS:
        raise Fail(f"systemctl shim: unsupported command {command!r} (see docs/lab.md)")
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
            name, value = VALUED[key], value if eq else next(it, "")
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
        return 0  # unit files are read afresh on every call anyway
    if not names:
        raise Fail(f"systemctl shim: {command!r} needs a unit name")
    return max(one(command, Unit(name), opts) for name in names)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Fail as error:
        print(error, file=sys.stderr)
        sys.exit(error.code)
