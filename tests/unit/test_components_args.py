"""Each component's Args check their fields and cross-field rules at construction, with the field
path in the message: generated valid and invalid Args (hypothesis) and the cases a user meets."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pulumi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k8s_ha.model.timers import ELECTION_TIMEOUT_MS
from k8s_ha.render.etcd import EtcdSettings
from k8s_ha.render.harbor import HarborConfig
from k8s_ha.render.loadbalancer import FrontDoor
from k8s_ha.render.members import Endpoint
from k8s_ha.resources.control_plane import ControlPlane
from k8s_ha.resources.etcd import ExternalEtcdArgs, MemberTls
from k8s_ha.resources.harbor import HarborRegistryArgs
from k8s_ha.resources.loadbalancer import HaproxyKeepalivedPairArgs
from k8s_ha.resources.target import Target
from k8s_ha.resources.workers import WorkerPool
from tests.unit.test_components_composition import control_plane_args, pool_args, run_under_mocks

NAMES = [f"n{i}" for i in range(9)]


def plain_target(name: str, ip: str) -> Target:
    return Target.ssh(name, ip, host_key=f"ssh-ed25519 AAAA{name}", private_key="automation key")


def hosts(names: list[str]) -> list[Target]:
    return [plain_target(n, f"10.0.1.{10 + NAMES.index(n)}") for n in names]


def etcd(names: list[str], tls_names: list[str] | None = None, **extra: object) -> ExternalEtcdArgs:
    tls = {n: MemberTls("cert", "key", "cert", "key") for n in (names if tls_names is None else tls_names)}
    return ExternalEtcdArgs(hosts=hosts(names), settings=EtcdSettings(version="3.6.14"), ca_cert="ca",
                            member_tls=tls, healthcheck_cert="cert", healthcheck_key="key", **extra)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=9))
def test_etcd_needs_3_5_or_7_members(count: int) -> None:
    names = NAMES[:count]
    if count in (3, 5, 7):
        assert [t.name for t in etcd(names).hosts] == names
    else:
        with pytest.raises(ValueError, match=rf"^ExternalEtcdArgs.hosts: etcd needs 3, 5 or 7 members .* "
                                             rf"got {count}$"):
            etcd(names)


@settings(max_examples=40, deadline=None)
@given(st.sets(st.sampled_from(NAMES[:5]), min_size=1))
def test_etcd_member_tls_names_must_be_the_hosts(tls_names: set[str]) -> None:
    names = NAMES[:3]
    if tls_names == set(names):
        etcd(names, sorted(tls_names))
    else:
        with pytest.raises(ValueError, match=r"^ExternalEtcdArgs.hosts: hosts .* do not match the names in member_tls"):
            etcd(names, sorted(tls_names))


def test_etcd_disk_sizes_name_hosts_and_are_positive() -> None:
    with pytest.raises(ValueError, match=r"ExternalEtcdArgs.disk_gib: no host named 'n7'; hosts are \['n0', 'n1', "):
        etcd(NAMES[:3], disk_gib={"n7": 10})
    with pytest.raises(ValueError, match=r"ExternalEtcdArgs.disk_gib.n1: 0 GiB; give 1 or more"):
        etcd(NAMES[:3], disk_gib={"n1": 0})
    with pytest.raises(ValueError, match=r"ExternalEtcdArgs\.hosts: two hosts share a name"):
        ExternalEtcdArgs(hosts=hosts(["n0", "n0", "n1"]), settings=EtcdSettings(version="3.6.14"), ca_cert="ca",
                         member_tls={}, healthcheck_cert="c", healthcheck_key="k")


def pair(vip: str, lbs: tuple[str, str] = ("10.0.2.2", "10.0.2.3"), apiservers: tuple[str, ...] = ("10.0.2.5",),
         names: tuple[str, str] = ("lb-a", "lb-b")) -> HaproxyKeepalivedPairArgs:
    door = FrontDoor(vip=ipaddress.IPv4Address(vip), prefix=24,
                     apiservers=tuple(Endpoint(f"m{i}", ipaddress.IPv4Address(a)) for i, a in enumerate(apiservers)))
    return HaproxyKeepalivedPairArgs(hosts=(plain_target(names[0], lbs[0]), plain_target(names[1], lbs[1])),
                                     front_door=door, kubernetes_ca="ca", stats_password="s", vrrp_password="v")


@settings(max_examples=60, deadline=None)
@given(vip=st.integers(min_value=1, max_value=8), apiservers=st.sets(st.integers(min_value=4, max_value=8), min_size=1))
def test_the_vip_is_no_machines_address(vip: int, apiservers: set[int]) -> None:
    taken = {2: "lb-a", 3: "lb-b"} | {a: f"m{i}" for i, a in enumerate(sorted(apiservers))}
    args = (f"10.0.2.{vip}", ("10.0.2.2", "10.0.2.3"), tuple(f"10.0.2.{a}" for a in sorted(apiservers)))
    if vip in taken:
        with pytest.raises(ValueError, match=rf"^HaproxyKeepalivedPairArgs.front_door.vip: 10.0.2.{vip} is the "
                                             rf"address of {taken[vip]}; the VIP must be an address no machine has"):
            pair(*args)
    else:
        assert str(pair(*args).front_door.vip) == f"10.0.2.{vip}"


def test_a_pair_is_two_distinct_hosts() -> None:
    with pytest.raises(ValueError, match=r"HaproxyKeepalivedPairArgs.hosts: two hosts share a name: \['lb', 'lb'\]"):
        pair("10.0.2.10", names=("lb", "lb"))
    with pytest.raises(ValueError, match=r"HaproxyKeepalivedPairArgs\.hosts: a keepalived pair needs exactly two"):
        replace(pair("10.0.2.10"), hosts=(plain_target("a", "10.0.2.2"),))  # type: ignore[arg-type]


def test_control_plane_args_refuse_what_would_go_unnoticed() -> None:
    args = control_plane_args("cp", 50, workers=["cp-w-0"])
    with pytest.raises(ValueError, match=r"ControlPlaneArgs\.masters: a control plane needs at least one master"):
        replace(args, masters=[])
    with pytest.raises(ValueError, match=r"ControlPlaneArgs.failure_domains: no master named 'cp-m-9'; "
                                         r"masters are \['cp-m-0', 'cp-m-1'\]"):
        replace(args, failure_domains={"cp-m-9": "rack a"})
    with pytest.raises(ValueError, match=r"ControlPlaneArgs.workers: \['cp-m-0'\] are masters"):
        replace(args, workers=["cp-m-0"])
    with pytest.raises(ValueError, match=r"ControlPlaneArgs\.workers: 'cp-w-0' is one string"):
        replace(args, workers="cp-w-0")
    from k8s_ha.render.kubernetes import RegistryMirror

    with pytest.raises(ValueError, match=r"ControlPlaneArgs.registry_certificate: the nodes pull through Harbor at "
                                         r"h.example; give the certificate Harbor serves"):
        replace(args, kubernetes=replace(args.kubernetes, registry=RegistryMirror("h.example")))


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.sampled_from(["cp-m-0", "cp-m-1", "cp-w-0", "zz"]), st.sampled_from(["a", "b"])))
def test_failure_domains_name_only_masters(domains: dict[str, str]) -> None:
    args = control_plane_args("cp", 50, workers=[])
    if set(domains) <= {"cp-m-0", "cp-m-1"}:
        assert replace(args, failure_domains=domains).failure_domains == domains
    else:
        with pytest.raises(ValueError, match=r"^ControlPlaneArgs.failure_domains: no master named"):
            replace(args, failure_domains=domains)


def test_worker_pool_args_check_against_their_control_plane() -> None:
    def program() -> None:
        control_plane = ControlPlane("cp", control_plane_args("cp", 51, workers=["cp-w-0", "cp-w-1"]))
        good = pool_args("cp", 51, control_plane, ["cp-w-0", "cp-w-1"])
        WorkerPool("pool", good)
        with pytest.raises(ValueError, match=r"WorkerPoolArgs\.pool: empty"):
            replace(good, pool="")
        with pytest.raises(ValueError, match=r"WorkerPoolArgs.failure_domains: no worker named 'cp-w-7'"):
            replace(good, failure_domains={"cp-w-7": "rack"})
        with pytest.raises(ValueError, match=r"WorkerPoolArgs\.workers: two hosts share a name"):
            replace(good, workers=[*good.workers, good.workers[0]])

    assert run_under_mocks(program).graph.named("cp-w-1-k8s-membership")


def test_harbor_admin_password_when_known() -> None:
    def harbor(password: pulumi.Input[str]) -> HarborRegistryArgs:
        return HarborRegistryArgs(host=plain_target("h", "10.0.3.40"), config=HarborConfig(host="h.example"),
                                  tls_cert="c", tls_key="k", admin_password=password, db_password="d")

    for bad in ("short", "Harbor12345"):
        with pytest.raises(ValueError, match=r"HarborRegistryArgs\.admin_password: give 8 or more characters"):
            harbor(bad)
    assert harbor("a long enough password").admin_password == "a long enough password"
    with pytest.raises(ValueError, match=r"HarborRegistryArgs\.config\.host: empty"):
        HarborRegistryArgs(host=plain_target("h", "10.0.3.40"), config=HarborConfig(host=""),
                           tls_cert="c", tls_key="k", admin_password="long password", db_password="d")


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(LABEL, min_size=1, max_size=4))
def test_host_names_are_accepted_as_ssh_addresses(labels: list[str]) -> None:
    name = ".".join(labels)
    assert Target.ssh("t", "10.0.4.1", host_key="k", private_key="p", address=name).access.address == name


@settings(max_examples=60, deadline=None)
@given(LABEL, st.sampled_from([" ", "_", "/", "..", ":", "@", "-."]), LABEL)
def test_text_that_is_no_host_name_is_refused(before: str, bad: str, after: str) -> None:
    with pytest.raises(ValueError, match=r"is neither an IP address nor a host name"):
        Target.ssh("t", "10.0.4.1", host_key="k", private_key="p", address=f"{before}{bad}{after}")


def test_etcd_settings_apply_the_stack_files_rules_at_construction() -> None:
    from k8s_ha.model.errors import SpecError

    with pytest.raises(SpecError) as error:
        EtcdSettings(version="9.9.9")
    assert "version: etcd 9.9.9 is not supported (3.6 or 3.7)" in str(error.value)
    with pytest.raises(SpecError) as error:
        EtcdSettings(version="3.6.14", heartbeat_interval_ms=300, election_timeout_ms=1000)
    assert "electionTimeoutMs: should be at least 5x heartbeatIntervalMs" in str(error.value)
    assert EtcdSettings(version="3.6.14").election_timeout_ms == ELECTION_TIMEOUT_MS
