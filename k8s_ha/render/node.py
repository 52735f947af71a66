"""The readiness step every host runs first: first boot finished, right hostname, right IP, and
the SSH host key the program pinned (which the connection already enforced; checked again here
so a stale known key on a re-imaged host fails loudly)."""

from __future__ import annotations

from k8s_ha.model.spec import StackSpec
from k8s_ha.placement.place import PlacedNode
from k8s_ha.render import material as m
from k8s_ha.render.steps import HostFile, Step
from k8s_ha.render.templating import render


def ready_step(spec: StackSpec, node: PlacedNode, material: m.Material) -> Step:
    marker = render("node.json.j2", cluster=spec.cluster.name, node=node.name, role=node.role.value, ip=str(node.ip))
    return Step(
        name="ready",
        host=node.name,
        script="ready.sh",
        delete_script="ready-delete.sh",
        files=(HostFile("/var/lib/k8s-ha/node.json", marker),),
        env=(
            ("K8SHA_NODE", node.name),
            ("K8SHA_NODE_IP", str(node.ip)),
            ("K8SHA_HOST_KEY", material[m.ssh_host_pub(node.name)].strip()),
        ),
    )
