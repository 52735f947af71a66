"""A stack run by the program under the recording monitor, and its recorded steps sent to real hosts.

    stack config -> run the program (recording monitor, real key material) -> recorded graph
      -> the hosts exist (libvirt guests, or node containers) -> wait for SSH (pinned key)
      -> the recorded remote.Command steps of those hosts, in the graph's dependency order

The steps sent are the recorded `create` command and `stdin` bundle of each remote.Command - what
pulumi-command would send - over SSH as the program's user, with the program's private key,
refusing any host key other than the recorded `hostKey`. How hosts are made and powered belongs to
the subclass: `GuestStack` (libvirt guests) or `NodeStack` (system containers).
"""

from __future__ import annotations

import concurrent.futures
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tests.guests.real_mocks import RealMaterialMocks
from tests.unit.harness import Graph, Registered, run_program

SSH_TIMEOUT_S = 2400.0  # TCG on a busy 2-core machine: 5 guests took over 15 min to first SSH
STEP_TIMEOUT_S = 1800.0  # a loadbalancer step took over 600 s on starved TCG guests
COMMAND = "command:remote:Command"
# Like pulumi-command's dial retries: a starved guest's sshd can miss the banner deadline.
DIAL_TIMEOUT_S = 30
DIAL_RETRIES = 10
DIAL_BACKOFF_S = 3.0  # between dials, as pulumi-command backs off: sshd may be restarting (cloud-init)
DIAL_ERRORS = ("banner exchange", "Connection timed out", "Connection refused", "No route to host",
               "Connection reset", "Connection closed by")


class StepError(RuntimeError):
    """A host or a step failed; the message names the host."""


class HostStalled(RuntimeError):
    """A host that is not answering SSH will not: it stopped, or its console went silent."""


class Lab(Protocol):
    """Where the operator's workstation sits: a network namespace on the hosts' bridge."""

    client_ip: str

    def netns_argv(self, argv: list[str]) -> list[str]: ...


def _dial_failed(done: subprocess.CompletedProcess[str]) -> bool:
    return done.returncode == 255 and any(e in done.stderr for e in DIAL_ERRORS)


@dataclass(frozen=True)
class Access:
    """How the program connects to one host (the recorded connection of its commands)."""

    host: str
    port: int
    user: str
    host_key: str
    private_key: str


class RecordedStack:
    """The recorded program and the steps of its booted hosts; subclasses make and power the hosts."""

    error: type[Exception] = StepError

    def __init__(self, lab: Lab, config: dict[str, Any], work: Path, log: Callable[[str], None],
                 booted: tuple[str, ...], mocks: RealMaterialMocks | None = None) -> None:
        self.lab, self.config, self.work, self.log, self.booted = lab, config, work, log, booted
        work.mkdir(parents=True, exist_ok=True)
        self.mocks = mocks or RealMaterialMocks()
        self.stdout: dict[str, str] = {}
        self.graph: Graph = run_program(self.config, mocks=self.mocks)
        self.commands = self.graph.of_type(COMMAND)
        self.access = {name: self._access(name) for name in booted}
        self.ssh_dir = work / "ssh"
        self.ssh_dir.mkdir(mode=0o700, exist_ok=True)
        for name in self.access:
            self._pin_host_key(name)
        key = self.ssh_dir / "id"
        key.write_text(next(iter(self.access.values())).private_key)
        key.chmod(0o600)
        self.started: dict[str, float] = {}
        self.reachable: dict[str, float] = {}
        self._write_client_files()

    # ---------------------------------------------------------- the hosts
    def power_off(self, name: str) -> None:
        """Cut the host's power (every process gone at once, its link down)."""
        raise NotImplementedError

    def power_on(self, name: str) -> None:
        """Boot the host again from the same disk."""
        raise NotImplementedError

    def pull_plug(self, name: str) -> float:
        """Cut the host's power at a known instant: returns that instant (CLOCK_MONOTONIC, taken
        just before the kill), once the host is down. A drill counts from it what the dead host
        can no longer have served."""
        raise NotImplementedError

    def boot_log(self, name: str) -> Path:
        """Where the host's console output goes (named in a boot failure)."""
        raise NotImplementedError

    def describe(self, name: str) -> str:
        """The host as an error names it (a guest adds its hypervisor: that is where to look)."""
        return name

    def netns_argv(self, argv: list[str]) -> list[str]:
        """Run `argv` as the operator's workstation (inside the lab namespace, on the bridge)."""
        return self.lab.netns_argv(argv)

    # ------------------------------------------------------ program data
    def _write_client_files(self) -> None:
        """The operator's copies of program outputs: the etcd CA and the healthcheck client identity."""
        out = self.mocks.outputs
        for file_name, text in {"etcd-ca.crt": out["etcd-ca-cert"]["certPem"],
                                "etcd-client.crt": out["etcd-healthcheck-client-cert"]["certPem"],
                                "etcd-client.key": out["etcd-healthcheck-client-key"]["privateKeyPem"]}.items():
            path = self.ssh_dir / file_name
            path.write_text(text)
            path.chmod(0o600)

    def rerun_program(self) -> None:
        """Record the program again with the same key material (after a change to a step's script):
        the next `run_command` sends the new text, as a second `pulumi up` would."""
        self.graph = run_program(self.config, mocks=self.mocks)
        self.commands = self.graph.of_type(COMMAND)

    def client_file(self, name: str) -> Path:
        return self.ssh_dir / name

    @property
    def vip(self) -> str:
        return str(self.config["network"]["vip"])

    def etcd_endpoints(self, names: tuple[str, ...] | None = None) -> list[str]:
        nodes = self.config["etcd"]["nodes"]
        return [f"https://{n['ip']}:2379" for n in nodes if names is None or n["name"] in names]

    def ip(self, name: str) -> str:
        """A node's address, as the stack config gives it."""
        for role in ("loadBalancer", "etcd", "controlPlane"):
            for node in self.config.get(role, {}).get("nodes", []):
                if node["name"] == name:
                    return str(node["ip"])
        for pool in self.config.get("workerPools", []):
            for node in pool.get("nodes", []):
                if node["name"] == name:
                    return str(node["ip"])
        raise KeyError(name)

    def _host_commands(self, name: str) -> list[Registered]:
        ip = self.ip(name)
        return [c for c in self.commands if c.inputs["connection"]["host"] == ip]

    def _access(self, name: str) -> Access:
        (ready,) = [c for c in self.commands if c.name == f"{name}-ready"]
        conn = ready.inputs["connection"]
        return Access(str(conn["host"]), int(conn["port"]), str(conn["user"]), str(conn["hostKey"]),
                      str(conn["privateKey"]))

    # ------------------------------------------------------------------ ssh
    def ssh_argv(self, name: str, *, known_hosts: Path | None = None) -> list[str]:
        access = self.access[name]
        return self.netns_argv([
            "ssh", "-F", "/dev/null", "-i", str(self.ssh_dir / "id"), "-p", str(access.port),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known_hosts or self.ssh_dir / f'{name}.known_hosts'}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"ConnectTimeout={DIAL_TIMEOUT_S}", "-o", "LogLevel=ERROR",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
            f"{access.user}@{access.host}"])

    def _dial(self, name: str, remote_command: str, stdin: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """`remote_command` over SSH, dialled again (after a pause) while the connection itself fails."""
        for attempt in range(DIAL_RETRIES):
            if attempt:
                time.sleep(DIAL_BACKOFF_S)
            done = subprocess.run([*self.ssh_argv(name), remote_command], input=stdin, capture_output=True,
                                  text=True, timeout=timeout, check=False)
            if not _dial_failed(done):
                break
        return done

    def run(self, name: str, script: str, *, stdin: str = "", timeout: float = 60.0,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """A script as root on the host (sudo; the program's user has NOPASSWD sudo)."""
        done = self._dial(name, f"sudo bash -c {shlex.quote(script)}", stdin, timeout)
        if check and done.returncode != 0:
            raise self.error(f"{self.describe(name)}: {script[:80]!r} exited {done.returncode}: "
                             f"{done.stderr.strip()[-500:]}")
        return done

    def wait_for_ssh(self, name: str, since: float, timeout: float = SSH_TIMEOUT_S,
                     stalled: Callable[[], str | None] | None = None) -> float:
        """Seconds from `since` until SSH with the pinned key works; a different key is refused at once.
        `stalled` says why the host cannot come up any more (then `HostStalled` is raised at once)."""
        deadline = since + timeout
        last = ""
        while time.monotonic() < deadline:
            if stalled is not None and (reason := stalled()):
                raise HostStalled(f"{self.describe(name)}: {reason} (last SSH error: {last[-200:]})")
            try:  # a booting host can accept TCP and then stall the SSH handshake: try again
                done = subprocess.run([*self.ssh_argv(name), "true"], capture_output=True, text=True,
                                      timeout=DIAL_TIMEOUT_S + 30, check=False)
            except subprocess.TimeoutExpired:
                last = "the SSH handshake stalled"
                continue
            if done.returncode == 0:
                return time.monotonic() - since
            last = done.stderr.strip()
            if "Host key verification failed" in last or "IDENTIFICATION HAS CHANGED" in last:
                raise self.error(f"{self.describe(name)}: presents a host key other than the pinned one; "
                                 f"refused: {last[-300:]}")
            time.sleep(0.5 if timeout < 600 else 2)
        raise self.error(f"{self.describe(name)}: no SSH answer on {self.access[name].host} within {timeout:g} s "
                         f"(last: {last[-200:]}); console log: {self.boot_log(name)}")

    # ---------------------------------------------------------------- steps
    def host_of(self, command: Registered) -> str:
        """The booted host a recorded remote.Command runs on (also one the program no longer has)."""
        return next(n for n in self.booted if self.access[n].host == command.inputs["connection"]["host"])

    def enlist(self, name: str) -> None:
        """A host the program has gained since the start (a replacement): the tier runs its steps."""
        self.booted = (*self.booted, name)
        self.access[name] = self._access(name)
        self._pin_host_key(name)

    def _pin_host_key(self, name: str) -> None:
        access = self.access[name]
        (self.ssh_dir / f"{name}.known_hosts").write_text(f"{access.host} {access.host_key}\n")

    def step_order(self, names: tuple[str, ...] | None = None, also: Callable[[Registered], bool] = lambda r: False,
                   only: set[str] | None = None) -> list[list[Registered]]:
        """The booted hosts' recorded commands (and the resources `also` selects; of those, only
        the URNs in `only` when given) in waves: each waits for everything before it."""
        wanted = [c for n in names or self.booted for c in self._host_commands(n)]
        wanted += [r for r in self.graph.resources.values() if also(r)]
        wanted = [r for r in wanted if only is None or r.urn in only]
        urns = {c.urn for c in wanted}

        def is_step(r: Registered) -> bool:
            return r.type == COMMAND or also(r)

        before = {c.urn: {a.urn for a in self.graph.ancestors(c) if is_step(a)} for c in wanted}
        for command in wanted:
            outside = [u for u in before[command.urn] if u not in urns]
            if outside:
                raise self.error(f"{command.name} waits for steps of hosts this tier does not boot: {outside}")
        waves: list[list[Registered]] = []
        done: set[str] = set()
        while len(done) < len(wanted):
            wave = [c for c in wanted if c.urn not in done and before[c.urn] <= done]
            if not wave:
                raise self.error("the recorded steps have a dependency cycle")
            waves.append(wave)
            done |= {c.urn for c in wave}
        return waves

    def run_command(self, command: Registered, action: str = "create") -> float:
        """One recorded remote.Command, as pulumi-command runs it: command text, bundle on stdin."""
        name = self.host_of(command)
        started = time.monotonic()
        # The steps are idempotent: a re-run after a lost connection is safe.
        done = self._dial(name, str(command.inputs[action]), str(command.inputs.get("stdin", "")), STEP_TIMEOUT_S)
        if done.returncode != 0:
            tail = "\n".join(f"{done.stdout}\n{done.stderr}".strip().splitlines()[-25:])
            raise self.error(f"step {command.name} on {name} exited {done.returncode}:\n{tail}")
        self.stdout[command.name] = done.stdout  # what pulumi-command keeps as the step's `stdout`
        return time.monotonic() - started

    def bootstrap(self) -> dict[str, float]:
        """Every recorded step of the booted hosts, wave by wave, each wave in parallel."""
        seconds: dict[str, float] = {}
        for wave in self.step_order():
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(wave)) as pool:
                runs = {c.name: pool.submit(self.run_command, c) for c in wave}
                for name, future in runs.items():
                    seconds[name] = round(future.result(), 1)
            self.log(f"steps done: {sorted(runs)}")
        return seconds
