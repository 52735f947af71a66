"""The lab as a real k8s-ha stack: a stack config in existing-host mode, bootstrapped over SSH with
exactly the production code path.

    config dict -> parse_stack -> place -> host_steps(spec, placement, node, material) -> bundle(step)

Each bundle is sent the way pulumi-command sends it: the command text is `remote_command("apply",
label)` (as-root.sh: `exec bash -s -- apply`) and the bundle is its stdin, over real SSH with the
host's pinned key. Certificates and passwords come from tests.support.material under the names the
Pulumi program uses; for existing hosts the program's `ssh/<node>/host-ed25519.pub` is the pinned
`existing.hostKey`, and so it is here.

Steps run in the program's dependency order (k8s_ha/resources/cluster.py): every host's readiness step,
then the load balancers and the etcd members in parallel, then the etcd health gate. The
control-plane nodes get their readiness step and then a kube-apiserver STAND-IN
(standin_apiserver.py) instead of the kubeadm steps, which need a container runtime and images
the lab cannot have: the front door is tested against what HAProxy checks, /readyz over TLS.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import hashlib
import shlex
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k8s_ha.model.spec import Role, StackSpec, parse_stack
from k8s_ha.placement.place import PlacedNode, Placement, place
from k8s_ha.render import material as m
from k8s_ha.render.steps import Step, bundle, digest, remote_command
from k8s_ha.render.tree import host_steps
from tests.lab.labhosts import HostSpec, Lab, LabCommandError, LabError, LabHost, SshKey
from tests.support.material import apiserver_standin_cert, generate

LB_NAMES = ("lb1", "lb2")
ETCD_NAMES = ("etcd1", "etcd2", "etcd3")
CP_NAMES = ("cp1", "cp2", "cp3")
HOST_NAMES = (*LB_NAMES, *ETCD_NAMES, *CP_NAMES)
CLUSTER_NAME = "lab"

# What the lab runs of each host's steps; the others (k8s-node, k8s-init, k8s-join-*, the
# upgrade chain's k8s-upgrade) need kubeadm and a container runtime. `bootstrap` checks that
# nothing else is skipped.
LAB_STEPS = ("ready", "loadbalancer", "etcd-member", "etcd-health")
KUBEADM_STEPS = ("k8s-node", "k8s-init", "k8s-join-control-plane", "k8s-join-worker", "k8s-upgrade",
                 "k8s-certs")
STEP_TIMEOUT_S = 240.0

STANDIN_UNIT = "k8s-ha-lab-standin-apiserver.service"
STANDIN_DIR = "/usr/local/lib/k8s-ha-lab"
STANDIN_PKI = "/etc/k8s-ha-lab"
STANDIN_SOURCE = Path(__file__).with_name("standin_apiserver.py")
PROBE = Path(__file__).with_name("probe.py")
APISERVER_PORT = 6443

# Lab-only settings in Debian's /etc/default files (k8s-ha does not manage these files):
# * keepalived: lab hosts have no /dev/log, so it logs to its console instead (the shim keeps it
#   in /var/log/shim/keepalived.service.log) and the drills can read its state transitions.
# * haproxy: `maxconn 20000` needs ~40,000 descriptors, and root on the lab machine cannot raise
#   the hard limit above 20,000 (no CAP_SYS_RESOURCE; systemd gives a service 524,288), so haproxy
#   refuses to start. `-n 9000` caps maxconn from the command line; nothing else changes.
LAB_DEFAULTS = {
    "/etc/default/keepalived": 'DAEMON_ARGS="--log-console --log-detail"\n',
    "/etc/default/haproxy": 'EXTRAOPTS="-S /run/haproxy-master.sock -n 9000"\n',
}


def stack_config(lab: Lab, *, load_balancer: dict[str, Any] | None = None,
                 etcd: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `k8s-ha:` config of the lab stack: every node an existing host with its pinned key.

    The gateway and DNS server are the client's address (the spec wants one inside the node
    network that no node uses; nothing in the lab routes through it). Lab hosts have no route
    out, so etcd is the machine's own Debian package (`etcd.source.kind: package`), not the
    upstream release the default downloads.
    """

    def node(name: str) -> dict[str, Any]:
        host = lab[name]
        return {"name": name, "ip": host.ip, "existing": {"hostKey": host.host_key.public_key}}

    return {
        "cluster": {"name": CLUSTER_NAME},
        "network": {"cidr": str(lab.network), "gateway": lab.client_ip, "dns": [lab.client_ip],
                    "vip": lab.spare_ip(0), "interface": "eth0"},
        "loadBalancer": {"nodes": [node(n) for n in LB_NAMES], **(load_balancer or {})},
        "etcd": {"nodes": [node(n) for n in ETCD_NAMES], "source": {"kind": "package"}, **(etcd or {})},
        "controlPlane": {"nodes": [node(n) for n in CP_NAMES]},
    }


@dataclass(frozen=True)
class StepRun:
    host: str
    step: str
    stdout: str
    stderr: str
    seconds: float

    @property
    def changed_nothing(self) -> bool:
        return f"k8s-ha {self.step}: no changes" in self.stdout


class LabStack:
    """A bootstrapped (or bootstrappable) lab stack. `retune` re-renders with other settings,
    keeping the same certificates and passwords, as a config change to a running stack would."""

    def __init__(self, lab: Lab, *, load_balancer: dict[str, Any] | None = None,
                 etcd: dict[str, Any] | None = None) -> None:
        missing = [n for n in HOST_NAMES if n not in lab.hosts]
        if missing:
            raise ValueError(f"the lab stack needs hosts {HOST_NAMES}, missing {missing}")
        self.lab = lab
        self.config = stack_config(lab, load_balancer=load_balancer, etcd=etcd)
        self.spec: StackSpec = parse_stack(self.config)
        self.placement: Placement = place(self.spec)
        material = generate(self.spec, self.placement)
        for node in self.placement.nodes:  # existing hosts: the pinned key, no private key
            material[m.ssh_host_pub(node.name)] = lab[node.name].host_key.public_key
            material.pop(m.ssh_host_key(node.name), None)
        self.material: dict[str, str] = material
        self.client_dir = lab.dir / "client"
        self._write_client_files()

    # ------------------------------------------------------------------ plan
    def retune(self, *, load_balancer: dict[str, Any] | None = None,
               etcd: dict[str, Any] | None = None) -> None:
        """Re-render with changed settings (same material); run `apply` steps to roll them out."""
        config = copy.deepcopy(self.config)
        config["loadBalancer"].update(load_balancer or {})
        config["etcd"].update(etcd or {})
        self.spec = parse_stack(config)
        self.placement = place(self.spec)
        self.config = config

    def node(self, name: str) -> PlacedNode:
        return self.placement.node(name)

    def host(self, name: str) -> LabHost:
        return self.lab[name]

    def steps(self, name: str) -> list[Step]:
        return host_steps(self.spec, self.placement, self.node(name), self.material)

    def lab_steps(self, name: str) -> list[Step]:
        steps = self.steps(name)
        skipped = [s.name for s in steps if s.name not in LAB_STEPS]
        unexpected = [s for s in skipped if s not in KUBEADM_STEPS]
        if unexpected:
            raise AssertionError(f"{name} has steps the lab does not know how to run: {unexpected}")
        return [s for s in steps if s.name in LAB_STEPS]

    @property
    def vip(self) -> str:
        return str(self.spec.network.vip)

    @property
    def master(self) -> str:
        """The LB rendered with the MASTER priority (the first in the plan; preempts when healthy)."""
        return self.placement.by_role(Role.LOAD_BALANCER)[0].name

    @property
    def backup(self) -> str:
        return self.placement.by_role(Role.LOAD_BALANCER)[1].name

    @property
    def advert_interval_s(self) -> float:
        return self.spec.load_balancer.advert_interval_ms / 1000

    @property
    def etcd_endpoints(self) -> str:
        return ",".join(f"https://{self.host(n).ip}:2379" for n in ETCD_NAMES)

    # --------------------------------------------------------------- running
    def run_step(self, step: Step, action: str = "apply") -> StepRun:
        """One step as pulumi-command runs it: the command text selects the action, the bundle is stdin."""
        text = bundle(step)
        label = f"{step.host}-{step.name} sha256:{digest(text)[:16]}"
        started = time.monotonic()
        done = self.host(step.host).run(remote_command(action, label), stdin=text, timeout=STEP_TIMEOUT_S)
        return StepRun(step.host, step.name, done.stdout, done.stderr, time.monotonic() - started)

    def run_steps(self, names: Iterable[str], step_name: str) -> list[StepRun]:
        """The named step on several hosts at once (the program runs independent steps in parallel)."""
        jobs = [(name, s) for name in names for s in self.lab_steps(name) if s.name == step_name]
        if not jobs:
            return []
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futures = [pool.submit(self.run_step, s) for _name, s in jobs]
            return [f.result() for f in futures]

    def run_steps_serially(self, names: Iterable[str], step_name: str) -> list[StepRun]:
        """The named step on one host after the other (a rolling change)."""
        return [self.run_step(s) for name in names for s in self.lab_steps(name) if s.name == step_name]

    def bootstrap(self, *, front_door: bool = True, etcd: bool = True) -> list[StepRun]:
        """Bring the lab stack up in the program's order; returns every step's run."""
        runs = self.run_steps(HOST_NAMES, "ready")
        if front_door:
            for name in LB_NAMES:
                self.host(name).run("".join(f"printf %s {shlex.quote(text)} > {path}\n"
                                            for path, text in LAB_DEFAULTS.items()))
        layer = [*(LB_NAMES if front_door else ()), *(ETCD_NAMES if etcd else ())]
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            lbs = pool.submit(self.run_steps, [n for n in layer if n in LB_NAMES], "loadbalancer")
            members = pool.submit(self.run_steps, [n for n in layer if n in ETCD_NAMES], "etcd-member")
            runs += lbs.result() + members.result()
        if etcd:
            runs += self.run_steps(ETCD_NAMES, "etcd-health")
        if front_door:
            self.install_standins()
        return runs

    def rerun(self, *, front_door: bool = True, etcd: bool = True) -> list[StepRun]:
        """Every step `bootstrap` ran, again, in the same order (what a second `pulumi up` runs
        when nothing changed, had pulumi-command not skipped them)."""
        runs = self.run_steps(HOST_NAMES, "ready")
        runs += self.run_steps(LB_NAMES if front_door else (), "loadbalancer")
        runs += self.run_steps(ETCD_NAMES if etcd else (), "etcd-member")
        runs += self.run_steps(ETCD_NAMES if etcd else (), "etcd-health")
        return runs

    # -------------------------------------------------------------- stand-ins
    def install_standins(self) -> None:
        """A kube-apiserver STAND-IN on every control-plane node: HTTPS /readyz on IP:6443 with a
        serving certificate from the cluster CA, run by the shim as a unit (no restart policy,
        so a killed stand-in stays dead until a drill starts it again)."""
        source = STANDIN_SOURCE.read_text()
        for name in CP_NAMES:
            host = self.host(name)
            cert, key = apiserver_standin_cert(self.material[m.KUBERNETES_CA], self.material[m.KUBERNETES_CA_KEY],
                                               name, host.ip)
            unit = (f"[Unit]\nDescription=STAND-IN for kube-apiserver (k8s-ha lab only): /readyz over TLS\n\n"
                    f"[Service]\nExecStart=/usr/bin/python3 {STANDIN_DIR}/standin_apiserver.py --bind {host.ip} "
                    f"--port {APISERVER_PORT} --cert {STANDIN_PKI}/standin.crt --key {STANDIN_PKI}/standin.key\n"
                    f"Restart=no\n")
            host.run(f"""set -eu
                mkdir -p {STANDIN_DIR} {STANDIN_PKI}
                cat > {STANDIN_DIR}/standin_apiserver.py
                printf %s {shlex.quote(cert)} > {STANDIN_PKI}/standin.crt
                (umask 077; printf %s {shlex.quote(key)} > {STANDIN_PKI}/standin.key)
                printf %s {shlex.quote(unit)} > /etc/systemd/system/{STANDIN_UNIT}
                systemctl enable --now {STANDIN_UNIT}
            """, stdin=source)

    # ------------------------------------------------------------ client side
    def _write_client_files(self) -> None:
        """The operator's copies: CAs, the etcd healthcheck client identity, the stats password.
        In the lab's state dir, so they go with the lab."""
        self.client_dir.mkdir(mode=0o700, exist_ok=True)
        for name, text in {"etcd-ca.crt": self.material[m.ETCD_CA],
                           "etcd-client.crt": self.material[m.ETCD_HEALTHCHECK_CERT],
                           "etcd-client.key": self.material[m.ETCD_HEALTHCHECK_KEY],
                           "kubernetes-ca.crt": self.material[m.KUBERNETES_CA],
                           "stats-password": self.material[m.HAPROXY_STATS_PASSWORD]}.items():
            path = self.client_dir / name
            path.write_text(text)
            path.chmod(0o600)

    def client_file(self, name: str) -> str:
        return str(self.client_dir / name)

    def etcdctl(self, *args: str, endpoints: str | None = None, with_cert: bool = True,
                timeout: float = 3.0, check: bool = False) -> Any:
        """etcdctl from the client namespace, authenticated as the healthcheck client."""
        argv = ["etcdctl", f"--endpoints={endpoints or self.etcd_endpoints}",
                f"--cacert={self.client_file('etcd-ca.crt')}",
                f"--dial-timeout={timeout:g}s", f"--command-timeout={timeout:g}s"]
        if with_cert:
            argv += [f"--cert={self.client_file('etcd-client.crt')}", f"--key={self.client_file('etcd-client.key')}"]
        return self.lab.client_run([*argv, *args], check=check, timeout=timeout * 4 + 10)

    @staticmethod
    def probe_command(mode: str, *args: str) -> list[str]:
        """probe.py's argv; wrap it with `lab.client_argv` or run it with `lab.client_run`."""
        return ["/usr/bin/python3", str(PROBE), mode, *args]

    # ---------------------------------------------------------------- state
    def file_digests(self, name: str) -> dict[str, str]:
        """sha256, mode and owner of every file the host's overlay holds under /etc, /usr/local and
        /var/lib/k8s-ha: what the steps installed or changed there (configs, units, certificates,
        scripts, the node marker). Read from the overlay's upper directory on the machine."""
        upper = self.host(name).state_dir / "upper"
        out: dict[str, str] = {}
        for top in ("etc", "usr/local", "var/lib/k8s-ha"):
            for path in sorted((upper / top).rglob("*")):
                if path.is_file() and not path.is_symlink():
                    info = path.stat()
                    out[str(path.relative_to(upper))] = (
                        f"{hashlib.sha256(path.read_bytes()).hexdigest()} {info.st_mode:o} {info.st_uid}:{info.st_gid}")
        return out

    def main_pids(self, name: str, units: Iterable[str]) -> dict[str, str]:
        """MainPID, NRestarts of each unit and every PID of its daemon, as the shim reports them."""
        out: dict[str, str] = {}
        for unit in units:
            show = self.host(name).run(f"systemctl show -p MainPID,NRestarts --value {unit}").stdout.split()
            daemon = unit.removesuffix(".service")
            out[unit] = f"main={show[0]} restarts={show[1]} pids={sorted(self.host(name).pids(daemon))}"
        return out


@contextlib.contextmanager
def lab_stack(keys: Callable[[str], SshKey], **settings: Any) -> Iterator[LabStack]:
    """A lab with every host of the stack (not bootstrapped); torn down and checked afterwards.
    `keys(name)` gives SSH keys: "client" for the operator, "host-NAME" for each host."""
    specs = [HostSpec(name, keys(f"host-{name}")) for name in HOST_NAMES]
    lab = Lab(specs, keys("client"))
    with lab:
        yield LabStack(lab, **settings)
    leftovers = lab.leftovers()
    if leftovers:
        raise LabError(f"the lab left things behind: {leftovers}")


def step_error(error: LabCommandError) -> str:
    """The last lines a failed step printed, for assertion messages."""
    return "\n".join(f"{error.stdout}\n{error.stderr}".strip().splitlines()[-25:])
