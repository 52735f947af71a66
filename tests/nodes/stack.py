"""The node-container cluster's stack: the lab stack (tests/nodes/config.py) on LXC node containers,
run by the program, every recorded step and add-on applied in the graph's order.

    ssh-keygen per node (its host key, pinned in the stack as existing.hostKey)
      -> run the program (recording monitor, real key material) -> recorded graph
      -> per node: the program's cloud-init user-data (pinned host key, the program's automation
         key authorised) + the node's network-config -> NoCloud seed -> boot the container
      -> the recorded steps over SSH, as for guests (tests/support/recorded_stack.py)
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from k8s_ha.placement.plan import plan_stack
from k8s_ha.render import material as m
from k8s_ha.render.cloudinit import user_data
from tests.cluster.cluster import ClusterSteps, Roles
from tests.nodes.config import CP_NAMES, ETCD_NAMES, LB_NAMES, WORKER_NAMES, stack_config
from tests.nodes.containers import NodeError, NodeLab, Seed
from tests.support.recorded_stack import RecordedStack

# Host settings the program does not manage, in the node's own layer before its first boot
# (docs/lab.md, node containers): HAProxy's `maxconn 20000` needs ~40,000 descriptors and root on
# this machine cannot raise the hard limit above 20,000 (no CAP_SYS_RESOURCE; systemd gives a
# service 524,288 on a VM), so `-n 9000` caps maxconn from Debian's defaults file, as the lab tier does.
HOST_FILES = {"lb": {"/etc/default/haproxy": 'EXTRAOPTS="-S /run/haproxy-master.sock -n 9000"\n'}}
SSH_TIMEOUT_S = 300.0  # a node container reaches SSH in seconds; cloud-init's first boot included

NETWORK_CONFIG = """\
# The node's own network configuration (a host made elsewhere brings its own): eth0 by name. The
# program's VM network-config matches the NIC by its permanent MAC, which a veth does not have.
version: 2
ethernets:
  eth0:
    dhcp4: false
    addresses: ["{ip}/{prefix}"]
    routes:
      - to: default
        via: {gateway}
    nameservers:
      addresses: [{gateway}]
"""


def host_key_pair(directory: Path, name: str) -> tuple[str, str]:
    """A node's own ed25519 host key (private, public), made as a machine's first boot would."""
    key = directory / f"{name}_host_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", str(key)],
                       check=True, capture_output=True)
    return key.read_text(), key.with_suffix(".pub").read_text().strip()


class NodeStack(RecordedStack):
    """The recorded program and the node containers it runs on; `close()` removes every node."""

    error = NodeError

    def __init__(self, lab: NodeLab, rootfs: Path, work: Path, pins: dict[str, Any],
                 log: Callable[[str], None] = print, workers: tuple[str, ...] = WORKER_NAMES,
                 upgrade_from: bool = False) -> None:
        self.node_lab, self.rootfs = lab, rootfs
        self.keys_dir = work / "host-keys"
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        self.host_keys = {n: host_key_pair(self.keys_dir, n) for n in (*LB_NAMES, *ETCD_NAMES, *CP_NAMES, *workers)}
        config = stack_config({n: pub for n, (_k, pub) in self.host_keys.items()}, lab.client_ip, pins, workers,
                              upgrade_from)
        super().__init__(lab, config, work, log, booted=tuple(self.host_keys))

    def new_host_key(self, name: str) -> str:
        """The public host key of a node the stack will gain (its container is made by `boot`)."""
        self.host_keys[name] = host_key_pair(self.keys_dir, name)
        return self.host_keys[name][1]

    def seed(self, name: str) -> Seed:
        """The program's cloud-init user-data for `name` (its pinned host key; the program's own key
        authorised, as an operator authorises `automationPublicKey` on an existing host)."""
        plan = plan_stack(self.config)
        placed = next(n for n in plan.placement.nodes if n.name == name)
        private, public = self.host_keys[name]
        automation = subprocess.run(["ssh-keygen", "-y", "-f", str(self.ssh_dir / "id")], capture_output=True,
                                    text=True, check=True).stdout.strip()
        material = {m.ssh_host_key(name): private, m.ssh_host_pub(name): public}
        net = self.config["network"]
        return Seed(user_data(plan.spec, placed, material, extra_keys=(automation,)),
                    NETWORK_CONFIG.format(ip=placed.ip, prefix=net["cidr"].split("/")[1], gateway=net["gateway"]),
                    f"{self.config['cluster']['name']}-{name}")

    def boot(self, names: tuple[str, ...] | None = None) -> dict[str, float]:
        """Make and start the node containers; seconds from start to SSH with the pinned key."""
        names = names or self.booted
        plan = plan_stack(self.config)
        macs = {n.name: n.mac for n in plan.placement.nodes}
        for name in names:
            files = HOST_FILES["lb"] if name in LB_NAMES else {}
            self.started[name] = self.node_lab.add(name, macs[name], self.rootfs, self.seed(name), files).start()
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(names)) as pool:
            waits = {n: pool.submit(self.wait_for_ssh, n, self.started[n], SSH_TIMEOUT_S) for n in names}
            reached = {n: round(f.result(), 1) for n, f in waits.items()}
        self.reachable.update(reached)
        return reached

    def boot_log(self, name: str) -> Path:
        return self.node_lab.nodes[name].dir / "log" / "console.log"

    def describe(self, name: str) -> str:
        return f"node container {name}"

    def power_off(self, name: str) -> None:
        self.node_lab.nodes[name].power_off()

    def power_on(self, name: str) -> None:
        self.node_lab.nodes[name].start()

    def pull_plug(self, name: str) -> float:
        return self.node_lab.nodes[name].power_off()

    def close(self) -> list[str]:
        return self.node_lab.close()


class NodeClusterStack(ClusterSteps, NodeStack):
    """The cluster on node containers: NodeStack's hosts, the cluster tier's steps and kubectl."""

    def __init__(self, lab: NodeLab, rootfs: Path, work: Path, pins: dict[str, Any],
                 kubectl: Path, log: Callable[[str], None] = print, workers: tuple[str, ...] = WORKER_NAMES,
                 upgrade_from: bool = False) -> None:
        NodeStack.__init__(self, lab, rootfs, work, pins, log, workers, upgrade_from)
        self._cluster_init(kubectl, Roles(LB_NAMES, ETCD_NAMES, CP_NAMES, workers))
        self.boot_started = time.monotonic()
