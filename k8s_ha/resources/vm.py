"""Machines: libvirt VMs across hypervisors, or hosts that already exist, behind one interface.

Either way a `Host` offers `access` (how to SSH in, with the pinned host key) and `ready` (the
first step, which every later step on that host depends on). Bootstrap layers never care which
kind of machine they run on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import partial

import pulumi
import pulumi_command as command
import pulumi_libvirt as libvirt

from k8s_ha.model.spec import Hypervisor, Role, StackSpec
from k8s_ha.placement.place import PlacedNode
from k8s_ha.render import material as m
from k8s_ha.render.cloudinit import network_config, user_data
from k8s_ha.render.node import ready_step
from k8s_ha.render.templating import read
from k8s_ha.resources.remote import (
    EXISTING_HOST_DIALS,
    HostAccess,
    MaterialViews,
    StepFactory,
    dials_for,
    remote_step,
    secret,
)
from k8s_ha.resources.target import Target

GIB = 1024**3


class Hypervisors:
    """One libvirt provider per hypervisor (created once, shared) and its base image volume."""

    def __init__(self, spec: StackSpec, used: set[str], parent: pulumi.Resource) -> None:
        self.providers: dict[str, libvirt.Provider] = {}
        self.base_images: dict[str, libvirt.Volume] = {}
        self.specs: dict[str, Hypervisor] = {hv.name: hv for hv in spec.hypervisors}
        for hv in spec.hypervisors:
            if hv.name not in used:
                continue
            provider = libvirt.Provider(f"hv-{hv.name}", uri=hv.uri, opts=pulumi.ResourceOptions(parent=parent))
            source = hv.base_image or spec.image.source
            tag = hashlib.sha256(source.encode()).hexdigest()[:10]
            self.providers[hv.name] = provider
            self.base_images[hv.name] = libvirt.Volume(
                f"{hv.name}-base-image",
                name=f"k8s-ha-{spec.cluster.name}-base-{tag}.{spec.image.format}",
                pool=hv.pool,
                source=source,
                format=spec.image.format,
                opts=pulumi.ResourceOptions(parent=parent, provider=provider),
            )


class Host(pulumi.ComponentResource):
    """What every bootstrap layer needs from a machine."""

    node: PlacedNode
    access: HostAccess
    ready: command.remote.Command

    @property
    def target(self) -> Target:
        """This machine as the components see it: name, cluster address, access, readiness."""
        return Target(self.node.name, self.node.ip, self.access, self.ready)

    def step(self, name: str, make_step: StepFactory, material: MaterialViews, *,
             parent: pulumi.Resource, after: Sequence[pulumi.Resource] = ()) -> command.remote.Command:
        """Run the step `make_step` renders on this host, after its readiness step and `after`,
        with the material this host may see."""
        return remote_step(name, self.access, make_step, material.for_node(self.node.name),
                           parent=parent, depends_on=[self.ready, *after])


def _ready(host: Host, access: HostAccess, spec: StackSpec, material: pulumi.Output[dict[str, str]],
           depends_on: list[pulumi.Resource]) -> command.remote.Command:
    node = host.node
    return remote_step(f"{node.name}-ready", access, partial(ready_step, spec, node), material,
                       parent=host, depends_on=depends_on)


class LibvirtVm(Host):
    """Root volume cloned from the hypervisor's base image, a cloud-init disk, and the domain."""

    def __init__(
        self,
        node: PlacedNode,
        spec: StackSpec,
        hypervisors: Hypervisors,
        views: MaterialViews,
        private_key: pulumi.Input[str],
        program_public_key: pulumi.Input[str] | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("k8s-ha:machines:LibvirtVm", node.name, None, opts)
        assert node.hypervisor is not None
        self.node = node
        material = views.for_node(node.name)
        hv = hypervisors.specs[node.hypervisor]
        on_hv = pulumi.ResourceOptions(parent=self, provider=hypervisors.providers[node.hypervisor])
        prefix = f"k8s-ha-{spec.cluster.name}-{node.name}"
        root = libvirt.Volume(
            f"{node.name}-root",
            name=f"{prefix}-root.qcow2",
            pool=hv.pool,
            base_volume_id=hypervisors.base_images[node.hypervisor].id,
            size=node.size.disk_gib * GIB,
            format="qcow2",
            opts=on_hv,
        )
        disks = [libvirt.DomainDiskArgs(volume_id=root.id)]
        if node.role is Role.HARBOR:
            data = libvirt.Volume(
                f"{node.name}-data",
                name=f"{prefix}-data.qcow2",
                pool=hv.pool,
                size=spec.harbor.data_disk_gib * GIB,
                format="qcow2",
                opts=pulumi.ResourceOptions.merge(on_hv, pulumi.ResourceOptions(protect=False)),
            )
            disks.append(libvirt.DomainDiskArgs(volume_id=data.id))
        extra = pulumi.Output.from_input(program_public_key or "")
        cloud_init_data = pulumi.Output.all(material, extra).apply(
            lambda args: user_data(spec, node, args[0], (args[1],) if args[1] else ())
        )
        cloudinit = libvirt.CloudInitDisk(
            f"{node.name}-cloudinit",
            name=f"{prefix}-cloudinit.iso",
            pool=hv.pool,
            user_data=secret(cloud_init_data),
            network_config=network_config(spec, node),
            opts=pulumi.ResourceOptions.merge(on_hv, pulumi.ResourceOptions(additional_secret_outputs=["user_data"])),
        )
        nic = libvirt.DomainNetworkInterfaceArgs(
            bridge=hv.attach.bridge, network_name=hv.attach.network, mac=node.mac, wait_for_lease=False
        )
        self.domain = libvirt.Domain(
            f"{node.name}-domain",
            name=prefix,
            type=hv.domain_type,
            vcpu=node.size.vcpu,
            memory=node.size.memory_mib,
            disks=disks,
            network_interfaces=[nic],
            cloudinit=cloudinit.id,
            autostart=True,
            running=True,
            cpu=libvirt.DomainCpuArgs(mode="host-passthrough") if hv.domain_type == "kvm" else None,
            consoles=[libvirt.DomainConsoleArgs(type="pty", target_port="0", target_type="serial")],
            # Headless (no default SPICE display), and under TCG a capped translation cache: configs/libvirt.
            xml=libvirt.DomainXmlArgs(xslt=read("libvirt/domain.xsl")),
            opts=on_hv,
        )
        self.access = HostAccess(
            name=node.name,
            address=str(node.ip),
            port=spec.ssh.port,
            user=spec.ssh.user,
            host_key=material.apply(lambda mat: mat[m.ssh_host_pub(node.name)]),
            private_key=private_key,
        )
        # Only the first step waits for the boot; later ones find the host up.
        booting = self.access.dialling(dials_for(spec.ssh.boot_timeout_s))
        self.ready = _ready(self, booting, spec, material, [self.domain])
        self.register_outputs({"domain": self.domain.id})


class ExistingHost(Host):
    """A machine made elsewhere: nothing is created, the program only connects (pinned key)."""

    def __init__(
        self,
        node: PlacedNode,
        spec: StackSpec,
        views: MaterialViews,
        private_key: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("k8s-ha:machines:ExistingHost", node.name, None, opts)
        assert node.existing is not None
        self.node = node
        self.access = HostAccess(
            name=node.name,
            address=node.existing.address or str(node.ip),
            port=spec.ssh.port,
            user=node.existing.user or spec.ssh.user,
            host_key=node.existing.host_key,
            private_key=private_key,
            dials=EXISTING_HOST_DIALS,
        )
        self.ready = _ready(self, self.access, spec, views.for_node(node.name), [])
        self.register_outputs({})
