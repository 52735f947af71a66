"""cloud-init user-data and network-config (v2) for a VM: identity, access, pinned host key, address."""

from __future__ import annotations

from k8s_ha.model.spec import Role, StackSpec
from k8s_ha.placement.place import PlacedNode
from k8s_ha.render import material as m
from k8s_ha.render.templating import render

HARBOR_DATA_MOUNT = "/data"


def user_data(spec: StackSpec, node: PlacedNode, material: m.Material, extra_keys: tuple[str, ...] = ()) -> str:
    """`extra_keys`: public keys to authorise besides the stack's (e.g. the program's own key)."""
    return render(
        "cloudinit/user-data.yaml.j2",
        cluster=spec.cluster.name,
        node=node.name,
        role=node.role.value,
        user=spec.ssh.user,
        authorized_keys=[*spec.ssh.authorized_keys, *extra_keys],
        host_key=material[m.ssh_host_key(node.name)].strip(),
        host_pub=material[m.ssh_host_pub(node.name)].strip(),
        os_mirror=spec.mirrors.os_packages,
        os_security_mirror=spec.mirrors.os_security_packages,
        data_disk=HARBOR_DATA_MOUNT if node.role is Role.HARBOR else None,
    )


def network_config(spec: StackSpec, node: PlacedNode) -> str:
    net = spec.network
    return render(
        "cloudinit/network-config.yaml.j2",
        cluster=spec.cluster.name,
        node=node.name,
        interface=net.interface,
        mac=node.mac,
        ip=node.ip,
        prefix=net.cidr.prefixlen,
        gateway=net.gateway,
        dns=[str(d) for d in net.dns],
        search=net.search_domains,
    )
