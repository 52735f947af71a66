"""Which libvirt domain type really boots a guest here: `kvm` where it works, else `qemu` (TCG).

`/dev/kvm` existing proves nothing: on this machine it is a PVM backend under which Debian's
stock kernel dies at once ("KVM internal error ... emulation failure"). So the probe boots the
base image itself under KVM (a throwaway overlay, no network, serial to a file) and takes `kvm`
only if the guest's systemd starts; otherwise `qemu`. The program's own default stays `kvm`.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BOOTED_MARKS = ("systemd[1]:", "Welcome to")
KVM_FAILURE_MARKS = ("KVM internal error", "emulation failure", "failed to initialize kvm", "Could not access KVM")
PROBE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DomainTypeProbe:
    domain_type: str
    reason: str
    seconds: float


def probe_domain_type(image: Path, timeout: float = PROBE_TIMEOUT_S) -> DomainTypeProbe:
    started = time.monotonic()
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return DomainTypeProbe("qemu", "no usable /dev/kvm", 0.0)
    with tempfile.TemporaryDirectory(prefix="k8s-ha-kvm-probe-") as tmp:
        overlay, serial = Path(tmp) / "probe.qcow2", Path(tmp) / "serial.log"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image.resolve()),
                        str(overlay)], check=True, capture_output=True)
        qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults", "-display", "none",
             "-nic", "none", "-no-reboot", "-serial", f"file:{serial}",
             "-drive", f"file={overlay},if=virtio,format=qcow2"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        try:
            while time.monotonic() - started < timeout:
                console = serial.read_text(errors="replace") if serial.exists() else ""
                if any(mark in console for mark in BOOTED_MARKS):
                    return DomainTypeProbe("kvm", "the base image boots under KVM", time.monotonic() - started)
                if qemu.poll() is not None:
                    output = (qemu.stdout.read() if qemu.stdout else "").strip()
                    failure = next((m for m in KVM_FAILURE_MARKS if m in output), output[-200:])
                    return DomainTypeProbe("qemu", f"KVM cannot run the guest ({failure})",
                                           time.monotonic() - started)
                time.sleep(0.2)
            return DomainTypeProbe("qemu", f"no boot under KVM within {timeout:g} s",
                                   time.monotonic() - started)
        finally:
            if qemu.poll() is None:
                qemu.kill()
            qemu.wait(10)
