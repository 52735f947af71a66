"""The libvirt-binding driver: the VMs the program registered, made through libvirt's Python API.

One definition, two drivers: where the real Pulumi engine and pulumi-libvirt run, they create the
program's `libvirt:index/*` resources; here the program runs under the recording mock monitor
(with real key material, real_mocks.py) and each recorded resource is translated, input by input,
into the libvirt calls pulumi-libvirt makes for it:

  Volume with `source`          -> a volume in `pool`, the image uploaded into it (checksum first)
  Volume with `baseVolumeId`    -> a qcow2 volume of `size` backed by that volume
  CloudInitDisk                 -> a NoCloud ISO (user-data, meta-data, network-config) in `pool`
  Domain                        -> domain XML: `type`, `vcpu`, `memory`, disks, the cloud-init
                                   CD-ROM, bridge NICs with their `mac`, the serial console,
                                   the `xml.xslt` transform; then `autostart` and `running`

Nothing here names a VM, a size or an address: they all come from the recorded inputs. Every
object made is remembered, and `destroy()` removes it, also after a half-made run.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from k8s_ha.cli.image import ImageError, verify
from tests.guests.binding import libvirt
from tests.unit.harness import Graph, Registered

VM_TYPE = "k8s-ha:machines:LibvirtVm"
VOLUME = "libvirt:index/volume:Volume"
CLOUD_INIT = "libvirt:index/cloudInitDisk:CloudInitDisk"
DOMAIN = "libvirt:index/domain:Domain"
PROVIDER = "pulumi:providers:libvirt"
UPLOAD_CHUNK = 4 << 20


class GuestError(RuntimeError):
    """A guest could not be made; the message names the VM and the hypervisor."""


@dataclass
class RecordedVm:
    """One LibvirtVm component of the recorded graph and the resources it registered."""

    name: str
    hypervisor: str  # the provider's resource name, e.g. "hv-hv-a"
    uri: str
    domain: Registered
    cloud_init: Registered
    volumes: list[Registered]


def _provider_urn(ref: str) -> str:
    return ref.rsplit("::", 1)[0]


def recorded_vms(graph: Graph) -> dict[str, RecordedVm]:
    """Every LibvirtVm in the graph, with its resources and its hypervisor's URI."""
    providers = {r.urn: r for r in graph.of_type(PROVIDER)}
    out: dict[str, RecordedVm] = {}
    for vm in graph.of_type(VM_TYPE):
        children = [r for r in graph.resources.values() if r.parent == vm.urn]
        (domain,) = [r for r in children if r.type == DOMAIN]
        (cloud_init,) = [r for r in children if r.type == CLOUD_INIT]
        provider = providers[_provider_urn(domain.provider)]
        out[vm.name] = RecordedVm(vm.name, provider.name, str(provider.inputs["uri"]), domain, cloud_init,
                                  [r for r in children if r.type == VOLUME])
    return out


def _mock_id(resource: Registered) -> str:
    """The id the recording mocks gave `resource` (harness.Mocks: '<name>-id')."""
    return f"{resource.name}-id"


@dataclass
class LibvirtDriver:
    """Makes recorded VMs on their hypervisors; remembers what it made, to remove it all."""

    graph: Graph
    work: Path
    log: Callable[[str], None] = print
    made: list[tuple[str, str, str]] = field(default_factory=list)  # (uri, kind, name)
    _paths: dict[str, str] = field(default_factory=dict)  # mock id -> volume path
    _conns: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vms = recorded_vms(self.graph)
        self._by_id = {_mock_id(r): r for r in self.graph.resources.values()}

    # ----------------------------------------------------------- connections
    def connect(self, vm: RecordedVm) -> Any:
        if vm.uri not in self._conns:
            try:
                self._conns[vm.uri] = libvirt.open(vm.uri)
            except libvirt.libvirtError as error:
                raise GuestError(f"VM {vm.name}: hypervisor {vm.hypervisor} ({vm.uri}) cannot be reached: "
                                 f"{error.get_error_message()}") from None
        return self._conns[vm.uri]

    def close(self) -> None:
        for conn in self._conns.values():
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
        self._conns.clear()

    # --------------------------------------------------------------- create
    def create(self, names: list[str]) -> dict[str, float]:
        """Make the named VMs (volumes, cloud-init disk, domain) and start them. Returns the
        monotonic instant each domain was started. On any error, removes what it made."""
        started: dict[str, float] = {}
        try:
            for name in names:
                vm = self.vms[name]
                conn = self.connect(vm)
                for volume in sorted(vm.volumes, key=lambda v: "baseVolumeId" in v.inputs):
                    self._volume(vm, conn, volume)
                iso = self._cloud_init(vm, conn)
                started[name] = self._domain(vm, conn, iso)
        except GuestError:
            self.destroy()
            raise
        except libvirt.libvirtError as error:
            self.destroy()
            raise GuestError(f"libvirt refused a step while making {names}: {error.get_error_message()}") from None
        return started

    def _pool(self, vm: RecordedVm, conn: Any, inputs: dict[str, Any]) -> Any:
        name = str(inputs.get("pool", "default"))
        try:
            return conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            raise GuestError(f"VM {vm.name}: hypervisor {vm.hypervisor} has no storage pool {name!r}") from None

    def _volume(self, vm: RecordedVm, conn: Any, volume: Registered) -> None:
        inputs = volume.inputs
        base_id = inputs.get("baseVolumeId")
        if base_id is not None:
            base = self._by_id[str(base_id)]
            self._volume(vm, conn, base)  # the base image first (once per hypervisor)
            base_path = self._paths[f"{vm.uri}|{_mock_id(base)}"]
            xml = (f"<volume><name>{escape(inputs['name'])}</name>"
                   f"<capacity unit='bytes'>{int(inputs['size'])}</capacity>"
                   f"<target><format type={quoteattr(str(inputs.get('format', 'qcow2')))}/></target>"
                   f"<backingStore><path>{escape(base_path)}</path><format type='qcow2'/></backingStore></volume>")
            self._paths[f"{vm.uri}|{_mock_id(volume)}"] = self._create_volume(vm, conn, inputs, xml)
            return
        key = f"{vm.uri}|{_mock_id(volume)}"
        if key in self._paths:
            return
        source = Path(str(inputs["source"]))
        try:
            verify(source)
        except ImageError as error:
            raise GuestError(f"VM {vm.name}: base image for hypervisor {vm.hypervisor}: {error}") from None
        size = source.stat().st_size
        xml = (f"<volume><name>{escape(inputs['name'])}</name><capacity unit='bytes'>{size}</capacity>"
               f"<target><format type={quoteattr(str(inputs.get('format', 'qcow2')))}/></target></volume>")
        self._paths[key] = self._create_volume(vm, conn, inputs, xml, upload=source)

    def _create_volume(self, vm: RecordedVm, conn: Any, inputs: dict[str, Any], xml: str,
                       upload: Path | None = None) -> str:
        pool = self._pool(vm, conn, inputs)
        vol = pool.createXML(xml, 0)
        self.made.append((vm.uri, "volume", f"{pool.name()}/{vol.name()}"))
        if upload is not None:
            stream = conn.newStream(0)
            vol.upload(stream, 0, upload.stat().st_size, 0)
            with upload.open("rb") as f:
                while chunk := f.read(UPLOAD_CHUNK):
                    stream.send(chunk)
            stream.finish()
        return str(vol.path())

    def _cloud_init(self, vm: RecordedVm, conn: Any) -> str:
        inputs = vm.cloud_init.inputs
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            files = {"user-data": str(inputs["userData"]),
                     "meta-data": str(inputs.get("metaData") or f"instance-id: {inputs['name']}\n"),
                     "network-config": str(inputs.get("networkConfig") or "")}
            for file_name, text in files.items():
                (Path(tmp) / file_name).write_text(text)
            iso = Path(tmp) / "cidata.iso"
            subprocess.run(["genisoimage", "-quiet", "-output", str(iso), "-volid", "cidata", "-joliet", "-rock",
                            *[str(Path(tmp) / n) for n in files]], check=True, capture_output=True)
            xml = (f"<volume><name>{escape(inputs['name'])}</name><capacity unit='bytes'>{iso.stat().st_size}"
                   f"</capacity><target><format type='raw'/></target></volume>")
            path = self._create_volume(vm, conn, inputs, xml, upload=iso)
        return path

    def domain_xml(self, vm: RecordedVm, iso: str) -> str:
        """The domain pulumi-libvirt defines for these inputs (its defaults, terraform-provider-libvirt
        0.8.1 `newDomainDef`: hvm, ACPI/APIC/PAE, a SPICE display with autoport when no graphics are
        asked for, the guest agent's virtio channel, a virtio RNG; virtio disks and NICs, the cloud-init
        disk as an IDE CD-ROM), then the program's `xml.xslt`."""
        inputs = vm.domain.inputs
        typ = str(inputs.get("type", "kvm"))
        disks = []
        for i, disk in enumerate(inputs.get("disks") or []):
            path = self._paths[f"{vm.uri}|{disk['volumeId']}"]
            disks.append(f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                         f"<source file={quoteattr(path)}/><target dev='vd{chr(97 + i)}' bus='virtio'/></disk>")
        disks.append(f"<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file={quoteattr(iso)}/>"
                     "<target dev='hdd' bus='ide'/><readonly/></disk>")
        nics = []
        for nic in inputs.get("networkInterfaces") or []:
            if nic.get("bridge"):
                source = f"<interface type='bridge'><source bridge={quoteattr(nic['bridge'])}/>"
            else:
                source = f"<interface type='network'><source network={quoteattr(nic['networkName'])}/>"
            mac = f"<mac address={quoteattr(nic['mac'])}/>" if nic.get("mac") else ""
            nics.append(f"{source}{mac}<model type='virtio'/></interface>")
        consoles = []
        for console in inputs.get("consoles") or []:
            log = self.work / f"{inputs['name']}.console.log"
            consoles.append(f"<serial type={quoteattr(console.get('type', 'pty'))}>"
                            f"<target port={quoteattr(str(console.get('targetPort', '0')))}/>"
                            f"<log file={quoteattr(str(log))} append='on'/></serial>")
        cpu = f"<cpu mode={quoteattr(inputs['cpu']['mode'])}/>" if inputs.get("cpu", {}).get("mode") else ""
        xml = (f"<domain type={quoteattr(typ)}><name>{escape(inputs['name'])}</name>"
               f"<memory unit='MiB'>{int(inputs['memory'])}</memory><vcpu>{int(inputs['vcpu'])}</vcpu>"
               "<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>"
               f"<features><acpi/><apic/><pae/></features>{cpu}<clock offset='utc'/>"
               f"<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>"
               f"<devices>{''.join(disks)}{''.join(nics)}{''.join(consoles)}"
               "<graphics type='spice' autoport='yes'/>"
               "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
               "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng></devices></domain>")
        xslt = (inputs.get("xml") or {}).get("xslt")
        if xslt:
            xml = self._transform(xml, str(xslt))
        return xml

    def _transform(self, xml: str, xslt: str) -> str:
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            (Path(tmp) / "t.xsl").write_text(xslt)
            (Path(tmp) / "d.xml").write_text(xml)
            done = subprocess.run(["xsltproc", str(Path(tmp) / "t.xsl"), str(Path(tmp) / "d.xml")],
                                  capture_output=True, text=True, check=True)
        return done.stdout

    def _domain(self, vm: RecordedVm, conn: Any, iso: str) -> float:
        inputs = vm.domain.inputs
        dom = conn.defineXML(self.domain_xml(vm, iso))
        self.made.append((vm.uri, "domain", str(inputs["name"])))
        if inputs.get("autostart"):
            dom.setAutostart(1)
        started = time.monotonic()
        if inputs.get("running", True):
            dom.create()
        self.log(f"defined and started {inputs['name']} on {vm.hypervisor} (type {inputs.get('type')}, "
                 f"{int(inputs['vcpu'])} vCPU, {int(inputs['memory'])} MiB)")
        return started

    # -------------------------------------------------------------- control
    def domain(self, name: str) -> Any:
        vm = self.vms[name]
        return self.connect(vm).lookupByName(str(vm.domain.inputs["name"]))

    def forget_connection(self, uri: str) -> None:
        """After a daemon was killed its connection is dead; the next call reconnects."""
        conn = self._conns.pop(uri, None)
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    def destroy(self) -> list[str]:
        """Remove everything made (domains first, then volumes); returns what could not be removed."""
        failed = []
        for uri, kind, name in sorted(self.made, key=lambda m: m[1] != "domain"):
            try:
                conn = self._conns.get(uri) or libvirt.open(uri)
                self._conns[uri] = conn
                if kind == "domain":
                    dom = conn.lookupByName(name)
                    if dom.isActive():
                        dom.destroy()
                    dom.undefine()
                else:
                    pool_name, vol_name = name.split("/", 1)
                    conn.storagePoolLookupByName(pool_name).storageVolLookupByName(vol_name).delete(0)
            except libvirt.libvirtError as error:
                failed.append(f"{kind} {name} on {uri}: {error.get_error_message()}")
        self.made.clear()
        self.close()
        return failed
