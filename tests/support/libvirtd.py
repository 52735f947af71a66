"""The libvirtd.conf of a test tier's private daemon (configs/libvirt/lab-libvirtd.conf), shared by
the engine tier's test-driver daemon and the guests tier's two lab hypervisors."""

from __future__ import annotations

from pathlib import Path

from k8s_ha.render.templating import read


def lab_libvirtd_conf(runtime: Path, log_dir: Path) -> str:
    return read("libvirt/lab-libvirtd.conf").format(runtime=runtime, log_dir=log_dir)
