"""The node-container cluster's stack: every machine an existing host (the product's ExistingHost
path) on a lab node container, spread over three failure domains as racks would be.

    rack-a: lb1 (MASTER priority)  etcd1  cp1  worker1
    rack-b: lb2                    etcd2  cp2  worker2
    rack-c:                        etcd3  cp3

2 load balancers, 3 etcd members, 3 masters and 2 workers, losing any one rack keeps the VIP, etcd
quorum and two masters. Everything is the product's default except what names the lab: addresses,
the served bundle and its pin table, and the two node-kind settings (cgroup v1 hosts, system
containers) that docs/lab.md lists with their reasons.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.lab_artifacts import lab_versions

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "nodes"
SUBNET = "10.213.0"
LB_NAMES = ("lb1", "lb2")
ETCD_NAMES = ("etcd1", "etcd2", "etcd3")
CP_NAMES = ("cp1", "cp2", "cp3")
WORKER_NAMES = ("worker1", "worker2")
NODES = (*LB_NAMES, *ETCD_NAMES, *CP_NAMES, *WORKER_NAMES)
ADDRESSES = {"lb1": 11, "lb2": 12, "etcd1": 21, "etcd2": 22, "etcd3": 23, "cp1": 31, "cp2": 32, "cp3": 33, "cp4": 34,
             "worker1": 41, "worker2": 42, "worker3": 43}
RACKS = {"lb1": "rack-a", "lb2": "rack-b", "etcd1": "rack-a", "etcd2": "rack-b", "etcd3": "rack-c",
         "cp1": "rack-a", "cp2": "rack-b", "cp3": "rack-c", "cp4": "rack-c", "worker1": "rack-a", "worker2": "rack-b",
         "worker3": "rack-c"}
FILES_PORT = 8080
REGISTRY_PORT = 5000


def ip(name: str) -> str:
    return f"{SUBNET}.{ADDRESSES[name]}"


def node_entry(name: str, host_key: str) -> dict[str, Any]:
    """A node of the stack file: its address and, as an existing host, its pinned key and rack."""
    return {"name": name, "ip": ip(name), "existing": {"hostKey": host_key, "failureDomain": RACKS[name]}}


def stack_config(host_keys: dict[str, str], client_ip: str, pins: dict[str, Any],
                 workers: tuple[str, ...] = WORKER_NAMES, upgrade_from: bool = False) -> dict[str, Any]:
    """`host_keys`: each node's public SSH host key (pinned, as a datacenter team would hand it
    over); `client_ip`: the operator's address on the bridge, where the bundle is served; `pins`: the
    bundle's artifacts.checksums and artifacts.imageDigests, as `bundle` writes them;
    `upgrade_from`: the Kubernetes version the rolling upgrade starts from (bundle-from's)."""
    def node(name: str) -> dict[str, Any]:
        return node_entry(name, host_keys[name])

    ver = lab_versions(upgrade_from=upgrade_from)
    return {
        "cluster": {"name": CLUSTER},
        "network": {"cidr": f"{SUBNET}.0/24", "gateway": client_ip, "dns": [client_ip], "vip": f"{SUBNET}.200",
                    "interface": "eth0"},
        "loadBalancer": {"nodes": [node(n) for n in LB_NAMES], "nopreempt": True},
        "etcd": {"nodes": [node(n) for n in ETCD_NAMES]},
        "controlPlane": {"nodes": [node(n) for n in CP_NAMES]},
        "workerPools": [{"name": "worker", "nodes": [node(n) for n in workers]}],
        "versions": {"kubernetes": ver.kubernetes, "containerd": ver.containerd, "runc": ver.runc,
                     "cniPlugins": ver.cni_plugins, "crictl": ver.crictl, "etcd": ver.etcd},
        "kubernetes": {"cni": "flannel", "metricsServer": True,
                       # Lab-only (docs/lab.md): this machine is cgroup v1 only, and the nodes are
                       # system containers.
                       "allowCgroupV1": True, "systemContainerNodes": True},
        "artifacts": {"filesRepo": f"http://{client_ip}:{FILES_PORT}", "imageRegistry": f"{client_ip}:{REGISTRY_PORT}",
                      "imageRegistryPlainHttp": True,  # serve-bundle serves plain HTTP
                      **pins},
    }
