"""etcd through its real consumers: bash and shellcheck on every bundle, systemd-analyze on the units,
and a real 3-member TLS cluster on loopback started from the rendered env files, backed up with the
rendered backup job, and restored with the restore script."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from k8s_ha.model.spec import EtcdRestore, Role, StackSpec
from k8s_ha.placement.place import PlacedNode, Placement, place
from k8s_ha.render import etcd as e
from k8s_ha.render.material import Placeholders
from k8s_ha.render.steps import Step, bundle
from k8s_ha.render.templating import CONFIGS
from tests.conftest import load_example
from tests.render.test_etcd_env import parse_env
from tests.support.material import generate
from tests.tools import require_tool

pytestmark = pytest.mark.render

WAIT_S = 30.0  # bound for every wait on a local cluster


def all_steps(spec: StackSpec, placement: Placement) -> tuple[list[Step], Step]:
    material = Placeholders()
    members = [e.etcd_member_step(e.etcd_config(spec, placement), n, material) for n in placement.by_role(Role.ETCD)]
    return members, e.etcd_health_step(e.etcd_config(spec, placement), material)


def test_every_bundle_passes_bash_and_shellcheck(example: tuple[StackSpec, Placement], tmp_path: Path) -> None:
    shellcheck = require_tool("shellcheck", "lints the generated step bundles")
    spec, placement = example
    members, health = all_steps(spec, placement)
    texts = {"health": bundle(health)}
    # etcd.restore's steps: a member's restore and the gate that marks the restored cluster.
    restoring = spec.model_copy(update={"etcd": spec.etcd.model_copy(update={
        "restore": EtcdRestore(url="https://backups.example.com/etcd.db", sha256="ab" * 32)})})
    config = e.etcd_config(restoring, placement)
    texts["restore"] = bundle(e.etcd_restore_step(config, placement.by_role(Role.ETCD)[0], Placeholders()))
    texts["restored"] = bundle(e.etcd_restored_step(config, Placeholders()))
    for step in members:  # each bundle holds the member script (apply) and etcd-remove (delete)
        assert step.delete_script == "etcd-remove.sh"
        texts[step.host] = bundle(step)
        assert "etcd-remove.sh" in texts[step.host] and "k8sha_delete()" in texts[step.host]
    paths = []
    for name, text in texts.items():
        path = tmp_path / f"{name}.sh"
        path.write_text(text)
        paths.append(str(path))
        subprocess.run(["bash", "-n", str(path)], check=True, capture_output=True, text=True)
    # The files the hosts run on their own (backup job, restore command), as installed.
    paths += [str(CONFIGS / "etcd/etcd-backup.sh"), str(CONFIGS / "scripts/etcd-restore.sh")]
    result = subprocess.run([shellcheck, "-s", "bash", "-S", "style", *paths], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_etcd_bundle_includes_the_shared_helpers_once(example: tuple[StackSpec, Placement]) -> None:
    """etcd-member/remove/health use etcd-lib.sh through Step.libs, after the step's environment."""
    spec, placement = example
    material = Placeholders()
    steps = [e.etcd_member_step(e.etcd_config(spec, placement), n, material) for n in placement.by_role(Role.ETCD)]
    steps.append(e.etcd_health_step(e.etcd_config(spec, placement), material))
    for step in steps:
        text = bundle(step)
        assert text.count("# ---- etcd-lib.sh ----") == 1 and text.count("etcd_ctl() {") == 1
        lib_at = text.index("# ---- etcd-lib.sh ----")
        assert text.index("export K8SHA_ETCD_PKI=") < lib_at < text.index("k8sha_apply() {")


def test_units_pass_systemd_analyze(example: tuple[StackSpec, Placement], tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", "checks the generated unit files")
    spec, placement = example
    node = placement.by_role(Role.ETCD)[0]
    config = e.etcd_config(spec, placement)
    units = {"etcd.service": e.etcd_unit(config), "etcd-backup.service": e.etcd_backup_service(config, node),
             "etcd-backup.timer": e.etcd_backup_timer(config)}
    for name, text in units.items():  # ExecStart must exist: point it at an executable stand-in
        lines = []
        for line in text.splitlines():
            if line.startswith("ExecStart="):
                stand_in = tmp_path / "bin" / Path(line.partition("=")[2]).name
                stand_in.parent.mkdir(exist_ok=True)
                stand_in.write_text("#!/bin/sh\n")
                stand_in.chmod(0o755)
                line = f"ExecStart={stand_in}"
            lines.append(line)
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    result = subprocess.run([analyze, "verify", "--man=no", *(str(tmp_path / n) for n in units)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    calendar = subprocess.run([analyze, "calendar", spec.etcd.backup.on_calendar], capture_output=True, text=True)
    assert calendar.returncode == 0, calendar.stderr


# ------------------------------------------------------------------ a real cluster on loopback
def _port_free(ip: str, port: int) -> bool:
    """Nobody listens there (connections that linger in TIME_WAIT do not count, as for etcd)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


def _loopback_ips() -> list[str]:
    """Three addresses 127.X.Y.1-3 picked per run, whose etcd ports nothing else holds."""
    rng = random.Random()
    for _ in range(50):
        base = f"127.{rng.randrange(16, 250)}.{rng.randrange(1, 250)}"
        ips = [f"{base}.{i}" for i in (1, 2, 3)]
        if all(_port_free(ip, port) for ip in ips for port in (2379, 2380, 2381)):
            return ips
    pytest.fail("no free loopback addresses for etcd")


@dataclass
class Member:
    node: PlacedNode
    root: Path  # the member's "/"
    env: dict[str, str] = field(default_factory=dict)  # etcd.env as the test runs it
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return e.client_url(self.node)

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")


class LocalCluster:
    """The rendered files of each member under its own root; etcd started as systemd would."""

    def __init__(self, tmp: Path, spec: StackSpec, placement: Placement, material: dict[str, str]) -> None:
        self.etcd, self.etcdctl = require_tool("etcd"), require_tool("etcdctl")
        self.bin_dir = str(Path(self.etcdctl).parent)
        self.members: list[Member] = []
        for node in placement.by_role(Role.ETCD):
            member = Member(node, tmp / node.name)
            step = e.etcd_member_step(e.etcd_config(spec, placement), node, material)
            for f in step.files:
                target = member.path(f.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(f.content)
                target.chmod(int(f.mode, 8))
            member.env = self._localise(member, parse_env(member.path(e.ENV_FILE).read_text()))
            member.path(e.ENV_FILE).write_text("".join(f"{k}={v}\n" for k, v in member.env.items()))
            member.path(e.DATA_DIR).mkdir(mode=0o700, parents=True)
            self.members.append(member)
        self.tls = [f"--cacert={self.members[0].path(e.CA_FILE)}",
                    f"--cert={self.members[0].path(e.HEALTHCHECK_CERT)}",
                    f"--key={self.members[0].path(e.HEALTHCHECK_KEY)}"]

    @staticmethod
    def _localise(member: Member, env: dict[str, str]) -> dict[str, str]:
        """Absolute paths move under the member's root. Three members share this machine's
        127.0.0.1, so the loopback client listener and the metrics listener move to the member's
        own address; everything else runs as rendered."""
        out = {k: str(member.path(v)) if v.startswith("/") else v for k, v in env.items()}
        ip = str(member.node.ip)
        listen = env["ETCD_LISTEN_CLIENT_URLS"].split(",")
        assert "https://127.0.0.1:2379" in listen
        out["ETCD_LISTEN_CLIENT_URLS"] = ",".join(u for u in listen if "127.0.0.1" not in u)
        out["ETCD_LISTEN_METRICS_URLS"] = env["ETCD_LISTEN_METRICS_URLS"].replace("127.0.0.1", ip)
        return out

    def start(self) -> None:
        """Like etcd.service: etcd.env, then cluster-state.env, in an otherwise empty environment."""
        for member in self.members:
            state = parse_env(member.path(e.STATE_FILE).read_text())
            assignments = [f"{k}={v}" for k, v in {**member.env, **state}.items()]
            log = (member.root / "etcd.log").open("ab")
            member.process = subprocess.Popen(["env", "-i", *assignments, self.etcd], stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True)
            log.close()

    def stop(self) -> None:
        """One member after the other, as an operator would (all at once, etcd 3.4 needs ~7 s)."""
        for member in self.members:
            if member.process is None:
                continue
            if member.process.poll() is None:
                member.process.terminate()
            try:
                member.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                member.process.kill()
                member.process.wait(timeout=10)

    def ctl(self, *args: str, tls: list[str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [self.etcdctl, *(self.tls if tls is None else tls), f"--endpoints={self.endpoints}",
                "--dial-timeout=2s", "--command-timeout=5s", *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, env={"PATH": os.environ["PATH"]})
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {result.stdout}{result.stderr}\n{self.logs()}")
        return result

    @property
    def endpoints(self) -> str:
        return ",".join(m.url for m in self.members)

    def wait_healthy(self) -> float:
        started, deadline = time.monotonic(), time.monotonic() + WAIT_S
        while self.ctl("endpoint", "health", "--cluster", "--command-timeout=1s", check=False).returncode != 0:
            for member in self.members:
                assert member.process is not None and member.process.poll() is None, \
                    f"{member.node.name} exited\n{self.logs()}"
            if time.monotonic() > deadline:
                raise AssertionError(f"not healthy after {WAIT_S}s\n{self.logs()}")
            time.sleep(0.2)
        return time.monotonic() - started

    def logs(self) -> str:
        return "\n".join(f"--- {m.node.name}\n" + "\n".join(
            (m.root / "etcd.log").read_text(errors="replace").splitlines()[-8:])
            for m in self.members if (m.root / "etcd.log").exists())


@pytest.fixture
def loopback_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """The dev stack's etcd members, moved to per-run loopback addresses, with real certificates."""
    spec, _placement = load_example("Pulumi.dev.yaml")
    ips = _loopback_ips()
    nodes = [n.model_copy(update={"ip": ipaddress.IPv4Address(ip)}) for n, ip in zip(spec.etcd.nodes, ips, strict=True)]
    spec = spec.model_copy(update={"etcd": spec.etcd.model_copy(update={"nodes": nodes})})
    placement = place(spec)
    material = generate(spec, placement, ip_override={n.name: str(n.ip) for n in placement.by_role(Role.ETCD)})
    cluster = LocalCluster(tmp_path, spec, placement, material)
    try:
        yield cluster
    finally:
        cluster.stop()
        alive = [m.node.name for m in cluster.members if m.process is not None and m.process.poll() is None]
        assert not alive, f"etcd still running: {alive}"
        listening = [f"{ip}:{port}" for ip in ips for port in (2379, 2380) if not _port_free(ip, port)]
        assert not listening, f"still bound: {listening}"


def _tls_probe(host: str, port: int, ca: Path, cert: tuple[Path, Path] | None) -> bytes:
    """TLS to an etcd listener, optionally with a client certificate; returns the reply to a
    plain HTTP request, or raises when the server rejects the handshake."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    with socket.create_connection((host, port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(b"GET /version HTTP/1.1\r\nHost: etcd\r\nConnection: close\r\n\r\n")
        return tls.recv(64)


def test_cluster_backup_and_restore_on_loopback(loopback_cluster: LocalCluster, tmp_path: Path) -> None:
    cluster = loopback_cluster
    first = cluster.members[0]
    for member in cluster.members:  # what etcd-member.sh writes when nobody answers yet
        member.path(e.STATE_FILE).write_text("ETCD_INITIAL_CLUSTER_STATE=new\n")
    cluster.start()
    took = cluster.wait_healthy()
    print(f"3-member TLS cluster healthy {took:.2f}s after start")

    cluster.ctl("put", "k8s-ha/test", "before-backup")
    assert cluster.ctl("get", "k8s-ha/test", "--print-value-only").stdout.strip() == "before-backup"

    # Clients without a certificate are refused (the same call with one succeeded just above).
    no_cert = cluster.ctl("get", "k8s-ha/test", "--command-timeout=2s", tls=[cluster.tls[0]], check=False)
    assert no_cert.returncode != 0 and "before-backup" not in no_cert.stdout

    # Peers talk TLS with client certificates: advertised as https, and a peer connection
    # without a certificate is rejected while one with the peer certificate gets an answer.
    members = json.loads(cluster.ctl("member", "list", "-w", "json").stdout)["members"]
    assert sorted(m["name"] for m in members) == sorted(m.node.name for m in cluster.members)
    assert all(u.startswith("https://") for m in members for u in m["peerURLs"] + m["clientURLs"])
    ca, ip = first.path(e.CA_FILE), str(first.node.ip)
    assert _tls_probe(ip, 2380, ca, (first.path(e.PEER_CERT), first.path(e.PEER_KEY))).startswith(b"HTTP/1.1")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _tls_probe(ip, 2380, ca, None)
    cluster_id = json.loads(cluster.ctl("member", "list", "-w", "json").stdout)["header"]["cluster_id"]

    # Backup: the installed script with the rendered unit's settings, paths under the member's root.
    unit_env = dict(line.removeprefix("Environment=").split("=", 1)
                    for line in first.path(e.BACKUP_SERVICE_FILE).read_text().splitlines()
                    if line.startswith("Environment="))
    assert unit_env["K8SHA_ETCD_ENDPOINT"] == first.url
    backup_env = {k: str(first.path(v)) if v.startswith("/") and k != "K8SHA_ETCD_BIN_DIR" else v
                  for k, v in unit_env.items()}
    backup_env |= {"K8SHA_ETCD_BIN_DIR": cluster.bin_dir, "K8SHA_BACKUP_RETAIN": "2", "PATH": os.environ["PATH"]}
    backup_dir = Path(backup_env["K8SHA_BACKUP_DIR"])
    backup_dir.mkdir(parents=True, mode=0o700)
    old = [backup_dir / f"etcd-{first.node.name}-2000010{i}T000000Z.db" for i in (1, 2)]
    for path in old:
        path.write_text("an older snapshot")
    (backup_dir / "unrelated.db").write_text("not ours: never pruned")
    run = subprocess.run(["bash", str(first.path(e.BACKUP_SCRIPT))], env=backup_env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    snapshots = sorted(backup_dir.glob(f"etcd-{first.node.name}-*.db"))
    assert [p.name for p in snapshots[:1]] == [old[1].name], "retain=2 keeps the newest two"
    assert len(snapshots) == 2 and not old[0].exists() and (backup_dir / "unrelated.db").exists()
    snapshot = snapshots[1]
    assert not list(backup_dir.glob(".*partial*")) and oct(snapshot.stat().st_mode)[-3:] == "600"
    status = json.loads(subprocess.run([cluster.etcdctl, "snapshot", "status", str(snapshot), "-w", "json"],
                                       capture_output=True, text=True, check=True).stdout)
    assert status["totalKey"] >= 1

    cluster.ctl("put", "k8s-ha/test", "after-backup")  # must not survive the restore
    cluster.stop()

    # Restore: the restore script on every member with the same snapshot; systemctl is a recorder.
    stub = tmp_path / "stub"
    stub.mkdir()
    calls = tmp_path / "systemctl.calls"
    (stub / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n[ "$1" != is-active ]\n')
    (stub / "systemctl").chmod(0o755)
    for member in cluster.members:
        calls.write_text("")
        restore_env = {"PATH": f"{stub}:{os.environ['PATH']}", "K8SHA_ETCD_BIN_DIR": cluster.bin_dir,
                       "K8SHA_ETCD_ENV_FILE": str(member.path(e.ENV_FILE)),
                       "K8SHA_ETCD_STATE_FILE": str(member.path(e.STATE_FILE))}
        run = subprocess.run(["bash", str(member.path(e.RESTORE_SCRIPT)), str(snapshot)], env=restore_env,
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert calls.read_text().splitlines() == ["stop etcd.service", "is-active --quiet etcd.service",
                                                  "start --no-block etcd.service"]
        kept = list(member.path(e.DATA_DIR).parent.glob("etcd.before-restore-*/member/wal"))
        assert len(kept) == 1, "the previous data is moved aside, never deleted"
    cluster.start()
    took = cluster.wait_healthy()
    print(f"restored cluster healthy {took:.2f}s after start")
    assert cluster.ctl("get", "k8s-ha/test", "--print-value-only").stdout.strip() == "before-backup"
    restored = json.loads(cluster.ctl("member", "list", "-w", "json").stdout)
    assert restored["header"]["cluster_id"] != cluster_id, "a restored cluster has a new identity (token)"
    assert sorted(m["name"] for m in restored["members"]) == sorted(m.node.name for m in cluster.members)
