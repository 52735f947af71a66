"""The program's domain XSLT through its real consumers: xsltproc (libxslt, as pulumi-libvirt
applies it) and libvirt's own domain schema (`virt-xml-validate`)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pytest

from k8s_ha.render.templating import read
from tests.tools import require_tool

pytestmark = pytest.mark.render

# What pulumi-libvirt 0.8.1 generates for a program VM before the transform (its defaults included).
DOMAIN = """<domain type='{type}'><name>k8s-ha-dev-lb1</name><memory unit='MiB'>512</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os><features><acpi/><apic/><pae/></features>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/v/lb1.qcow2'/>
<target dev='vda' bus='virtio'/></disk><interface type='bridge'><source bridge='br0'/>
<mac address='52:54:00:12:34:56'/><model type='virtio'/></interface>
<serial type='pty'><target port='0'/></serial><graphics type='spice' autoport='yes'/>
<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng></devices></domain>"""


def transform(domain_type: str, tmp_path: Path) -> tuple[Path, ElementTree.Element]:
    xsltproc = require_tool("xsltproc", "pulumi-libvirt applies the XSLT with libxslt")
    (tmp_path / "domain.xsl").write_text(read("libvirt/domain.xsl"))
    (tmp_path / "in.xml").write_text(DOMAIN.format(type=domain_type))
    out = tmp_path / f"{domain_type}.xml"
    done = subprocess.run([xsltproc, "-o", str(out), str(tmp_path / "domain.xsl"), str(tmp_path / "in.xml")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return out, ElementTree.parse(out).getroot()


@pytest.mark.parametrize("domain_type", ["kvm", "qemu"])
def test_domains_are_headless_and_tcg_gets_a_capped_cache(domain_type: str, tmp_path: Path) -> None:
    out, domain = transform(domain_type, tmp_path)
    assert domain.find("devices/graphics") is None
    assert (domain.find("features/tcg/tb-cache") is not None) == (domain_type == "qemu")
    kept = ("devices/disk", "devices/interface", "devices/serial", "devices/channel", "devices/rng")
    assert all(domain.find(path) is not None for path in kept)
    validate = require_tool("virt-xml-validate", "libvirt's schema is the real consumer")
    require_tool("xmllint", "virt-xml-validate runs it")
    done = subprocess.run([validate, str(out), "domain"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
