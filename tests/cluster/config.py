"""The cluster tier's lab stack: the fewest guests that still show every drill, on the two
lab hypervisors, installing from the lab bundle served on the operator's address.

    hv-a: lb1 (MASTER priority)  etcd1           cp1  worker1
    hv-b: lb2                    etcd2 etcd3     cp2  worker2

2 LBs, 3 etcd members, 2 masters, 2 workers (docs/lab.md, "Cluster tier": why not the dev topology's
3 masters on 2 cores under TCG). The combined drill powers off lb1, cp2 and worker2 together.
Lab-only settings are marked; everything else is the product's default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.guests.config import SIZES as GUEST_SIZES
from tests.guests.config import lab_base, lab_nodes
from tests.support.lab_artifacts import lab_versions

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "lab"
LB_NAMES = ("lb1", "lb2")
ETCD_NAMES = ("etcd1", "etcd2", "etcd3")
CP_NAMES = ("cp1", "cp2")
WORKER_NAMES = ("worker1", "worker2")
NODES = (*LB_NAMES, *ETCD_NAMES, *CP_NAMES, *WORKER_NAMES)
PINS = {"lb1": "hv-a", "lb2": "hv-b", "etcd1": "hv-a", "etcd2": "hv-b", "etcd3": "hv-b",
        "cp1": "hv-a", "cp2": "hv-b", "worker1": "hv-a", "worker2": "hv-b"}
# kubeadm's preflight wants 2 CPUs and 1700 MB on a master; a worker runs kubelet, containerd,
# kube-proxy, flannel and the test pods.
SIZES = {**GUEST_SIZES, "cp": {"vcpu": 2, "memoryMib": 2048, "diskGib": 20},
         "worker": {"vcpu": 1, "memoryMib": 1536, "diskGib": 20}}
FILES_PORT = 8080
REGISTRY_PORT = 5000
# Lab-only timing: a TCG guest runs 20-30x slower, so a kubelet's heartbeat or a leader's renewal
# can lag by seconds; the product defaults (12 s grace over 3 s node lease renewals, 8/6/2 s leader
# leases) would flap here.
LAB_FAILOVER = {"nodeLeaseDurationS": 40, "nodeMonitorGracePeriodS": 60, "podEvictionTimeoutS": 30, "leaderLeaseS": 30,
                "leaderRenewDeadlineS": 20, "leaderRetryPeriodS": 4}


def stack_config(hypervisors: dict[str, str], client_ip: str, image: Path, domain_type: str,
                 pins: dict[str, Any], subnet: str = "10.212.0") -> dict[str, Any]:
    """`hypervisors`: name -> libvirt URI; `client_ip`: the operator's address on the bridge, where
    the bundle is served; `pins`: the bundle's artifacts.checksums and artifacts.imageDigests."""
    node = lab_nodes(PINS, SIZES, subnet)
    base = lab_base(CLUSTER, hypervisors, client_ip, image, domain_type, subnet, node)
    # Lab-only: a TCG master answers /readyz in 1-2 s under load; at the default 1 s check HAProxy
    # marked the only apiserver DOWN and kubeadm join saw EOF.
    base["loadBalancer"]["haproxy"] = {"checkIntervalMs": 2000}
    ver = lab_versions(ROOT / "configs" / "lab-artifacts" / "components.env")
    return {
        **base,
        "etcd": {"nodes": [node("etcd1", "21", "etcd"), node("etcd2", "22", "etcd"), node("etcd3", "23", "etcd")]},
        "controlPlane": {"nodes": [node("cp1", "31", "cp"), node("cp2", "32", "cp")]},
        "workerPools": [{"name": "worker",
                         "nodes": [node("worker1", "41", "worker"), node("worker2", "42", "worker")]}],
        "versions": {"kubernetes": ver.kubernetes, "containerd": ver.containerd, "runc": ver.runc,
                     "cniPlugins": ver.cni_plugins, "crictl": ver.crictl, "etcd": ver.etcd},
        # Lab-only waitScale: under TCG kubeadm init's first API calls outlast kubeadm's 1 min.
        "kubernetes": {"cni": "flannel", "metricsServer": True, "failover": LAB_FAILOVER, "waitScale": 5},
        "artifacts": {"filesRepo": f"http://{client_ip}:{FILES_PORT}", "imageRegistry": f"{client_ip}:{REGISTRY_PORT}",
                      "imageRegistryPlainHttp": True,  # serve-bundle serves plain HTTP
                      **pins},
    }
