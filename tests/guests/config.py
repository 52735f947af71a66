"""The guests tier's stack config: two lab hypervisors, 2 LBs + 3 etcd members (booted) and the
control plane the spec requires (defined by the program, not booted in this tier).

Placement is pinned so that hv-a holds lb1 (MASTER priority) and a minority of etcd members:
losing it leaves the VIP and etcd quorum on hv-b. Two hypervisors are below the 3 the project
recommends; the program warns, and the drills measure the surviving side.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

CLUSTER = "guests"
LB_NAMES = ("lb1", "lb2")
ETCD_NAMES = ("etcd1", "etcd2", "etcd3")
BOOTED = (*LB_NAMES, *ETCD_NAMES)
PINS = {"lb1": "hv-a", "lb2": "hv-b", "etcd1": "hv-a", "etcd2": "hv-b", "etcd3": "hv-b",
        "cp1": "hv-a", "cp2": "hv-b", "cp3": "hv-a"}
# Small guests: the spec's minimums for LB (512 MiB) and etcd (1 GiB); the cluster tier's nodes
# must still fit beside them in 24 GiB.
SIZES = {"lb": {"vcpu": 1, "memoryMib": 512, "diskGib": 8}, "etcd": {"vcpu": 1, "memoryMib": 1024, "diskGib": 10},
         "cp": {"vcpu": 2, "memoryMib": 1700, "diskGib": 20}}


Node = Callable[[str, str, str], dict[str, Any]]


def lab_nodes(pins: dict[str, str], sizes: dict[str, dict[str, int]], subnet: str) -> Node:
    """node(name, last octet, kind): a node pinned to its hypervisor with its kind's size."""
    def node(name: str, ip: str, kind: str) -> dict[str, Any]:
        return {"name": name, "ip": f"{subnet}.{ip}", "hypervisor": pins[name], **sizes[kind]}

    return node


def lab_base(cluster: str, hypervisors: dict[str, str], client_ip: str, image: Path, domain_type: str,
             subnet: str, node: Node) -> dict[str, Any]:
    """What every lab stack shares: the hypervisors on the namespace's bridge, the network and the
    LB pair, with the product's failover timers. `client_ip`: the operator's address on the bridge (the
    nodes' gateway and DNS server: the spec wants one; nothing routes through it)."""
    return {
        "cluster": {"name": cluster},
        "hypervisors": [{"name": name, "uri": uri, "domainType": domain_type, "attach": {"bridge": "br0"},
                         "baseImage": str(image)} for name, uri in hypervisors.items()],
        "network": {"cidr": f"{subnet}.0/24", "gateway": client_ip, "dns": [client_ip],
                    "vip": f"{subnet}.200", "interface": "eth0"},
        "loadBalancer": {"nodes": [node("lb1", "11", "lb"), node("lb2", "12", "lb")], "nopreempt": True},
    }


def stack_config(hypervisors: dict[str, str], client_ip: str, image: Path, domain_type: str,
                 subnet: str = "10.212.0") -> dict[str, Any]:
    """`hypervisors`: name -> libvirt URI; `client_ip`: the operator's address on the bridge."""
    node = lab_nodes(PINS, SIZES, subnet)
    return {
        **lab_base(CLUSTER, hypervisors, client_ip, image, domain_type, subnet, node),
        # Guests have no route out: etcd is the package baked into the role image (Debian 13's 3.5),
        # not the upstream release the default downloads.
        "etcd": {"nodes": [node("etcd1", "21", "etcd"), node("etcd2", "22", "etcd"), node("etcd3", "23", "etcd")],
                 "source": {"kind": "package"}},
        "controlPlane": {"nodes": [node(f"cp{i}", f"3{i}", "cp") for i in (1, 2, 3)]},
    }
