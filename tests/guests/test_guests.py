"""The guests tier: the program's own LB and etcd VMs boot as real libvirt guests on hv-a and hv-b,
receive their real bootstrap steps over pinned SSH, and survive real power cuts.

One scenario per session (booting TCG guests is the expensive part): the tests run in file order
on it, and the fixture's teardown checks that nothing is left behind.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.guests.domain_type import probe_domain_type
from tests.guests.drills import (
    Measurement,
    etcd_healthy,
    etcdctl,
    hypervisor_loss,
    power_cut_etcd_leader,
    power_cut_vip_holder,
)
from tests.guests.driver import GuestError
from tests.guests.hypervisors import LabHypervisors
from tests.guests.stack import BOOTED, ETCD_NAMES, LB_NAMES, GuestStack
from tests.support.recorded_stack import HostStalled

pytestmark = pytest.mark.guests

MEASUREMENTS: list[Measurement] = []


@pytest.fixture(scope="module")
def stack(base_image: Path, work_dir: Path) -> Iterator[GuestStack]:
    probe = probe_domain_type(base_image)
    print(f"domain type: {probe.domain_type} ({probe.reason})")
    hvs = LabHypervisors()
    with hvs:
        guests = GuestStack(hvs, base_image, probe.domain_type, work_dir / "stack")
        try:
            guests.boot()
            print(f"define -> SSH (s): {guests.reachable}")
            guests.bootstrap()
            yield guests
        finally:
            failed = guests.close()
    leftovers = hvs.leftovers()
    assert not failed and not leftovers, f"the tier left things behind: {failed} {leftovers}"


def test_guests_are_what_the_program_defined(stack: GuestStack) -> None:
    for name in BOOTED:
        vm = stack.driver.vms[name]
        inputs = vm.domain.inputs
        xml = ElementTree.fromstring(stack.driver.domain(name).XMLDesc(0))
        assert xml.get("type") == inputs["type"]
        assert int(xml.findtext("vcpu") or 0) == int(inputs["vcpu"])
        assert int(xml.findtext("memory") or 0) == int(inputs["memory"]) * 1024  # KiB
        (nic,) = xml.findall("devices/interface")
        (recorded_nic,) = inputs["networkInterfaces"]
        assert nic.find("mac").get("address") == recorded_nic["mac"]  # type: ignore[union-attr]
        assert nic.find("source").get("bridge") == recorded_nic["bridge"]  # type: ignore[union-attr]
        if inputs["type"] == "qemu":  # the program's XSLT caps TCG's translation cache
            assert xml.find("features/tcg/tb-cache") is not None
        assert xml.find("devices/graphics") is None  # and drops pulumi-libvirt's default display
        root = next(v for v in vm.volumes if v.name.endswith("-root"))
        pool = stack.driver.connect(vm).storagePoolLookupByName(root.inputs["pool"])
        info = pool.storageVolLookupByName(root.inputs["name"]).info()
        assert info[1] == int(root.inputs["size"])  # grown to the program's disk size
        grown = stack.run(name, "lsblk -bno SIZE /dev/vda | head -1").stdout.strip()
        assert int(grown) == int(root.inputs["size"])


def test_only_the_pinned_host_key_is_accepted(stack: GuestStack, tmp_path: Path) -> None:
    other = stack.access["lb2"].host_key
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{stack.access['lb1'].host} {other}\n")
    done = subprocess.run([*stack.ssh_argv("lb1", known_hosts=wrong), "true"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode != 0
    assert "Host key verification failed" in done.stderr or "IDENTIFICATION HAS CHANGED" in done.stderr


def test_front_door_and_etcd_layers_run(stack: GuestStack) -> None:
    for name in LB_NAMES:
        assert stack.run(name, "systemctl is-active haproxy keepalived").stdout.split() == ["active", "active"]
    holders = [n for n in LB_NAMES if stack.vip in stack.run(n, "ip -o -4 addr show dev eth0").stdout]
    assert len(holders) == 1, f"VIP held by {holders}"
    connect = subprocess.run(stack.hvs.netns_argv(["/usr/bin/python3", "-c", (
        f"import socket; socket.create_connection(('{stack.vip}', 6443), timeout=5).close()")]),
        capture_output=True, text=True, timeout=30, check=False)
    assert connect.returncode == 0, connect.stderr
    for name in ETCD_NAMES:
        assert stack.run(name, "systemctl is-active etcd").stdout.strip() == "active"
    # real systemd applied the units' priorities: the failover daemons go before other work
    nices = {(name, daemon): set(stack.run(name, f"ps -o ni= -C {daemon}").stdout.split())
             for name, daemons in ((LB_NAMES[0], ("keepalived", "haproxy")), (ETCD_NAMES[0], ("etcd",)))
             for daemon in daemons}
    assert nices == {(LB_NAMES[0], "keepalived"): {"-15"}, (LB_NAMES[0], "haproxy"): {"-10"},
                     (ETCD_NAMES[0], "etcd"): {"-10"}}, nices
    assert etcd_healthy(stack)
    members = etcdctl(stack, "member", "list", "-w", "simple")
    assert members.returncode == 0 and len(members.stdout.strip().splitlines()) == 3, members.stdout
    put = etcdctl(stack, "put", "/k8s-ha-guests/check", "ok")
    assert put.returncode == 0, put.stderr


def test_hypervisor_loss(stack: GuestStack) -> None:
    result = hypervisor_loss(stack, "hv-a")
    MEASUREMENTS.append(result)
    assert result.details["vip_holder_lost"], "the drill must take the VIP holder's hypervisor"
    assert result.seconds is not None
    assert result.details["first_etcd_write_s"] is not None
    assert result.details["both_held_vip_at_s"] == []
    assert len(result.details["holders_after_rejoin"]) == 1
    assert etcd_healthy(stack)


def test_power_cut_of_the_vip_holder(stack: GuestStack) -> None:
    result = power_cut_vip_holder(stack)
    MEASUREMENTS.append(result)
    assert result.seconds is not None
    assert result.details["both_held_vip_at_s"] == []
    assert "BACKUP" in result.details["restarted_state"]
    assert result.details["holders_after_rejoin"] == [result.details["survivor"]]  # nopreempt


def test_power_cut_of_the_etcd_leader(stack: GuestStack) -> None:
    result = power_cut_etcd_leader(stack)
    MEASUREMENTS.append(result)
    assert result.seconds is not None
    assert result.details["new_leader"] is not None
    assert etcd_healthy(stack)


# ------------------------------------------------------------ bad input
@pytest.fixture
def spare_hypervisors(guests_available: None) -> Iterator[LabHypervisors]:
    hvs = LabHypervisors()
    with hvs:
        yield hvs
    assert hvs.leftovers() == []


def _no_volumes_or_domains(hvs: LabHypervisors) -> list[str]:
    found = []
    for hv in hvs.hypervisors.values():
        conn = hv.connect()
        try:
            found += [f"{hv.name}: domain {d.name()}" for d in conn.listAllDomains()]
            found += [f"{hv.name}: volume {v.name()}" for p in conn.listAllStoragePools() for v in p.listAllVolumes()]
        finally:
            conn.close()
    return found


def test_unreachable_hypervisor_is_named_and_nothing_is_made(spare_hypervisors: LabHypervisors,
                                                             base_image: Path, tmp_path: Path) -> None:
    guests = GuestStack(spare_hypervisors, base_image, "qemu", tmp_path)
    vm = guests.driver.vms["lb2"]
    vm.uri = spare_hypervisors["hv-b"].uri.replace("libvirt-sock", "no-such-sock")
    with pytest.raises(GuestError, match=r"VM lb2: hypervisor hv-hv-b .* cannot be reached"):
        guests.driver.create(["lb1", "lb2"])  # lb1 is made first, then removed again
    assert _no_volumes_or_domains(spare_hypervisors) == []


def test_damaged_base_image_is_refused(spare_hypervisors: LabHypervisors, base_image: Path,
                                       tmp_path: Path) -> None:
    damaged = tmp_path / base_image.name
    damaged.write_bytes(base_image.read_bytes()[: 1 << 20])
    (tmp_path / f"{base_image.name}.sha256").write_text((base_image.parent / f"{base_image.name}.sha256").read_text())
    guests = GuestStack(spare_hypervisors, damaged, "qemu", tmp_path / "work")
    with pytest.raises(GuestError, match=r"VM lb1: base image for hypervisor hv-hv-a: .*sha256"):
        guests.driver.create(["lb1"])
    assert _no_volumes_or_domains(spare_hypervisors) == []


def test_silent_guest_is_named(spare_hypervisors: LabHypervisors, base_image: Path, tmp_path: Path) -> None:
    guests = GuestStack(spare_hypervisors, base_image, "qemu", tmp_path)
    started = time.monotonic()
    with pytest.raises(GuestError, match=r"VM etcd2 on hv-hv-b: no SSH answer"):
        guests.wait_for_ssh("etcd2", started, timeout=3)


def test_a_stopped_or_silent_guest_is_seen_without_waiting_out_the_boot(
        spare_hypervisors: LabHypervisors, base_image: Path, tmp_path: Path) -> None:
    """The boot wait gives up on a guest at once when its domain stops, and after its console has
    been silent too long (a paused domain here), so `boot()` can power-cycle it instead of waiting 40 min."""
    guests = GuestStack(spare_hypervisors, base_image, "qemu", tmp_path)
    try:
        started = guests.driver.create(["etcd2"])["etcd2"]
        guests.driver.domain("etcd2").suspend()
        with pytest.raises(HostStalled, match=r"VM etcd2 on hv-hv-b: no SSH and its console silent for 2 s"):
            guests.wait_for_ssh("etcd2", started, timeout=120, stalled=guests.stall_watch("etcd2", silent_s=2))
        guests.power_off("etcd2")
        with pytest.raises(HostStalled, match=r"VM etcd2 on hv-hv-b: its domain stopped"):
            guests.wait_for_ssh("etcd2", started, timeout=120, stalled=guests.stall_watch("etcd2"))
    finally:
        assert guests.close() == []
    assert _no_volumes_or_domains(spare_hypervisors) == []
