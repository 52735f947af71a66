"""Each component's Args check their fields and cross-field rules at construction, with the field
path in the message: generated valid and invalid Args (hypothesis) for every component, and the
cases a user meets. Where the stack file has a rule for the same value, the Args are held to the
stack's own verdict (same messages), not to a copy of its bounds."""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import re
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from k8s_ha.model.errors import SpecError, UnknownFieldError
from k8s_ha.model.spec import ControlPlaneSpec, HarborSpec, WorkerPool, parse_stack
from k8s_ha.model.stackfile import read_stack_file
from k8s_ha.render.etcd import EtcdSettings
from k8s_ha.render.harbor import DatabaseSection, HarborConfig
from k8s_ha.render.kubernetes import RegistryMirror
from k8s_ha.render.loadbalancer import FrontDoor
from k8s_ha.render.members import Endpoint
from k8s_ha.resources import control_plane as cp_module
from k8s_ha.resources import etcd as etcd_module
from k8s_ha.resources import harbor as harbor_module
from k8s_ha.resources import loadbalancer as lb_module
from k8s_ha.resources import workers as workers_module
from k8s_ha.resources.control_plane import ControlPlane, ControlPlaneArgs
from k8s_ha.resources.etcd import ExternalEtcd, ExternalEtcdArgs, MemberTls
from k8s_ha.resources.harbor import HarborRegistry, HarborRegistryArgs
from k8s_ha.resources.loadbalancer import HaproxyKeepalivedPair, HaproxyKeepalivedPairArgs, pair_config
from k8s_ha.resources.target import Target
from k8s_ha.resources.workers import WorkerPool as WorkerPoolComponent
from k8s_ha.resources.workers import WorkerPoolArgs
from tests.conftest import ROOT
from tests.unit.test_components_composition import control_plane_args, kubernetes, pool_args, run_under_mocks

NAMES = [f"n{i}" for i in range(9)]
SHA256 = "a" * 64


def plain_target(name: str, ip: str) -> Target:
    return Target.ssh(name, ip, host_key=f"ssh-ed25519 AAAA{name}", private_key="automation key")


def hosts(names: list[str]) -> list[Target]:
    return [plain_target(n, f"10.0.1.{10 + i}") for i, n in enumerate(names)]


def refused(build: Callable[[], object]) -> list[str]:
    """The field paths `build` is refused at: every problem of a SpecError, or the one path a
    hand-written rule names (`<Args>.<path>: message`); [] when it builds."""
    try:
        build()
    except SpecError as error:
        return [p.path for p in error.problems]
    except ValueError as error:
        return [str(error).split(": ", 1)[0]]
    return []


def problems(build: Callable[[], object]) -> list[tuple[str, str]]:
    """(path, message) of every problem a model or SpecError-raising class reports; [] when it builds."""
    try:
        build()
    except SpecError as error:
        return [(p.path, p.message) for p in error.problems]
    return []


def rooted(found: list[tuple[str, str]], owner: str, renamed: dict[str, str]) -> list[tuple[str, str]]:
    """A model's problems as a class that holds its fields reports them: under the class, with
    the model's field renamed to the class's."""
    out = []
    for path, message in found:
        head = re.match(r"[^.\[]*", path).group()  # type: ignore[union-attr]
        out.append((f"{owner}.{renamed.get(head, head)}{path[len(head):]}", message))
    return out


@cache
def _prod() -> dict[str, Any]:
    return read_stack_file(ROOT / "Pulumi.prod.yaml").config


def stack_messages(edit: Callable[[dict[str, Any]], object], path: str) -> list[str]:
    """What the stack file says at `path` once `edit` changed the prod stack: the rule's own words."""
    config = copy.deepcopy(_prod())
    edit(config)
    try:
        parse_stack(config)
    except SpecError as error:
        return [p.message for p in error.problems if p.path == path]
    return []


# ---- ExternalEtcdArgs ------------------------------------------------------------------------------


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
        with pytest.raises(ValueError, match=rf"^ExternalEtcdArgs.hosts: {count} members: use 3, 5 or 7\. etcd "
                                             r"needs a majority \(n/2\+1\) alive"):
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


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.integers(min_value=-3, max_value=70_000), st.sampled_from([0, 1, 9, 10, 65536, 65537])))
def test_etcd_disk_sizes_follow_the_stacks_verdict(size: int) -> None:
    """A size the stack refuses for an etcd node (bounds, then the role's minimum) the Args refuse
    with the stack's words; a size it takes they take."""
    stack = stack_messages(lambda c: c["etcd"]["nodes"][0].update(diskGib=size), "etcd.nodes[0].diskGib")
    found = [message for path, message in problems(lambda: etcd(NAMES[:3], disk_gib={"n0": size}))
             if path == "ExternalEtcdArgs.disk_gib.n0"]
    assert bool(found) == bool(stack), (found, stack)
    assert set(found) <= set(stack)
    if not found:
        assert etcd(NAMES[:3], disk_gib={"n0": size}).disk_gib == {"n0": size}


def test_etcd_disk_sizes_name_hosts() -> None:
    with pytest.raises(ValueError, match=r"ExternalEtcdArgs.disk_gib: no host named 'n7'; hosts are \['n0', 'n1', "):
        etcd(NAMES[:3], disk_gib={"n7": 10})
    with pytest.raises(ValueError, match=r"ExternalEtcdArgs\.hosts: two hosts share a name"):
        ExternalEtcdArgs(hosts=hosts(["n0", "n0", "n1"]), settings=EtcdSettings(version="3.6.14"), ca_cert="ca",
                         member_tls={}, healthcheck_cert="c", healthcheck_key="k")


# ---- HaproxyKeepalivedPairArgs -----------------------------------------------------------------------


def pair(vip: str, lbs: tuple[str, str] = ("10.0.2.2", "10.0.2.3"), apiservers: tuple[str, ...] = ("10.0.2.5",),
         names: tuple[str, str] = ("lb-a", "lb-b")) -> HaproxyKeepalivedPairArgs:
    door = FrontDoor(vip=ipaddress.IPv4Address(vip), prefix=24,
                     apiservers=tuple(Endpoint(f"m{i}", ipaddress.IPv4Address(a)) for i, a in enumerate(apiservers)))
    return HaproxyKeepalivedPairArgs(hosts=(plain_target(names[0], lbs[0]), plain_target(names[1], lbs[1])),
                                     front_door=door, kubernetes_ca="ca", stats_password="s", vrrp_password="v")


@settings(max_examples=80, deadline=None)
@given(vip=st.one_of(st.integers(min_value=0, max_value=255), st.integers(min_value=0, max_value=9)),
       apiservers=st.sets(st.integers(min_value=4, max_value=8), min_size=1),
       lb_b=st.sampled_from(["10.0.2.3", "10.0.3.3"]))
def test_the_vip_is_no_machines_address_and_the_pair_is_on_its_subnet(vip: int, apiservers: set[int],
                                                                       lb_b: str) -> None:
    api = sorted(apiservers)
    args = (f"10.0.2.{vip}", ("10.0.2.2", lb_b), tuple(f"10.0.2.{a}" for a in api))
    if vip in (0, 255):  # the door refuses it itself
        expected = ["FrontDoor.vip"]
    elif vip in api:
        expected = [f"FrontDoor.apiservers[{api.index(vip)}].ip"]
    else:
        expected = [f"HaproxyKeepalivedPairArgs.hosts[{i}].ip" for i, ip in enumerate(args[1])
                    if ip == args[0] or not ip.startswith("10.0.2.")]
    assert refused(lambda: pair(*args)) == expected
    if not expected:
        assert str(pair(*args).front_door.vip) == f"10.0.2.{vip}"


def test_the_pair_refusals_read_as_the_stacks() -> None:
    with pytest.raises(ValueError, match=r"^HaproxyKeepalivedPairArgs.hosts\[0\].ip: 10.0.2.2 is already used by "
                                         r"front_door.vip$"):
        pair("10.0.2.2")
    with pytest.raises(ValueError, match=r"^HaproxyKeepalivedPairArgs.hosts\[1\].ip: 10.0.3.3 is outside the node "
                                         r"network 10.0.2.0/24$"):
        pair("10.0.2.10", lbs=("10.0.2.2", "10.0.3.3"))
    with pytest.raises(ValueError, match=r"^HaproxyKeepalivedPairArgs.hosts\[0\].name: 'LB_A' is not a DNS-1123 "):
        pair("10.0.2.10", names=("LB_A", "lb-b"))


def test_a_pair_is_two_distinct_hosts() -> None:
    with pytest.raises(ValueError, match=r"HaproxyKeepalivedPairArgs.hosts: two hosts share a name: \['lb', 'lb'\]"):
        pair("10.0.2.10", names=("lb", "lb"))
    with pytest.raises(ValueError, match=r"^HaproxyKeepalivedPairArgs\.hosts: needs exactly 2 load-balancer nodes "
                                         r"\(a keepalived MASTER and BACKUP\), got 1$"):
        replace(pair("10.0.2.10"), hosts=(plain_target("a", "10.0.2.2"),))  # type: ignore[arg-type]


# ---- ControlPlaneArgs ------------------------------------------------------------------------------


MASTER_NAMES = ["cp-m-0", "cp-m-1", "cp-m-2", "CP_M"]


def masters(names: list[str]) -> list[Target]:
    return [plain_target(n, f"10.50.0.{21 + i}") for i, n in enumerate(names)]


def expected_control_plane(names: list[str], workers: list[str] | str, registry: bool,
                           certificate: bool) -> list[str]:
    """Where ControlPlaneArgs must refuse: the rules in the order they run; the masters as the
    stack's controlPlane.nodes would be refused (its own model is the oracle)."""
    if len(set(names)) != len(names):
        return ["ControlPlaneArgs.masters"]
    nodes = [{"name": n, "ip": f"10.50.0.{21 + i}"} for i, n in enumerate(names)]
    spec = [p for p, _ in rooted(problems(lambda: ControlPlaneSpec(nodes=nodes)), "ControlPlaneArgs",
                                 {"nodes": "masters"})]
    if spec:
        return spec
    if registry and not certificate:
        return ["ControlPlaneArgs.registry_certificate"]
    if isinstance(workers, str) or set(workers) & set(names):
        return ["ControlPlaneArgs.workers"]
    return []


@settings(max_examples=80, deadline=None)
@given(names=st.lists(st.sampled_from(MASTER_NAMES), max_size=9),
       workers=st.one_of(st.lists(st.sampled_from(["cp-w-0", "cp-m-0"]), unique=True), st.just("cp-w-0")),
       registry=st.booleans(), certificate=st.booleans())
def test_control_plane_args_hold_the_stacks_rules_for_masters(names: list[str], workers: list[str] | str,
                                                              registry: bool, certificate: bool) -> None:
    if len(names) > 7:  # the list's bound, before its items (as the stack file's)
        names = [f"cp-m-{i}" for i in range(len(names))]
    base = control_plane_args("cp", 50, workers=[])
    mirror = RegistryMirror("registry.cp.example") if registry else None

    def build() -> ControlPlaneArgs:
        return replace(base, masters=masters(names), workers=workers,
                       kubernetes=replace(base.kubernetes, registry=mirror),
                       registry_certificate="-----BEGIN CERTIFICATE-----" if certificate else None)

    expected = expected_control_plane(names, workers, registry, certificate)
    assert refused(build) == expected
    if not expected:
        assert [t.name for t in build().masters] == names


def test_control_plane_args_refuse_what_would_go_unnoticed() -> None:
    args = control_plane_args("cp", 50, workers=["cp-w-0"])
    with pytest.raises(ValueError, match=r"^ControlPlaneArgs\.masters: needs at least 2 control-plane nodes for HA "
                                         r"\(3 recommended\), got 0$"):
        replace(args, masters=[])
    with pytest.raises(ValueError, match=r"ControlPlaneArgs.failure_domains: no master named 'cp-m-9'; "
                                         r"masters are \['cp-m-0', 'cp-m-1'\]"):
        replace(args, failure_domains={"cp-m-9": "rack a"})
    with pytest.raises(ValueError, match=r"ControlPlaneArgs.workers: \['cp-m-0'\] are masters"):
        replace(args, workers=["cp-m-0"])
    with pytest.raises(ValueError, match=r"ControlPlaneArgs\.workers: 'cp-w-0' is one string"):
        replace(args, workers="cp-w-0")
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


# ---- WorkerPoolArgs --------------------------------------------------------------------------------


JOINING = ("cp-w-0", "cp-w-1")


@cache
def joined_control_plane() -> ControlPlane:
    """A control plane that expects JOINING, built once under the mocks; Args only read it."""
    built: list[ControlPlane] = []
    run_under_mocks(lambda: built.append(ControlPlane("cp", control_plane_args("cp", 52, workers=list(JOINING)))))
    return built[0]


def expected_pool(names: list[str], pool: str, labels: dict[str, str], domains: dict[str, str], registry: bool,
                  certificate: bool) -> list[tuple[str, str]] | list[str]:
    """Where WorkerPoolArgs must refuse, in the order its rules run: the stack's workerPools rules
    (name, labels, nodes; the model's own verdict, messages included), then the control plane's
    workers, Harbor's certificate and the failure domains."""
    if len(set(names)) != len(names):
        return ["WorkerPoolArgs.workers"]
    nodes = [{"name": n, "ip": f"10.52.0.{31 + i}"} for i, n in enumerate(names)]
    model = problems(lambda: WorkerPool(name=pool, labels=labels, nodes=nodes))
    if model:
        return rooted(model, "WorkerPoolArgs", {"name": "pool", "nodes": "workers"})
    if set(names) - set(JOINING):
        return ["WorkerPoolArgs.workers"]
    if registry and not certificate:
        return ["WorkerPoolArgs.registry_certificate"]
    for name, domain in domains.items():
        if name not in names:
            return ["WorkerPoolArgs.failure_domains"]
        if not domain:
            return [f"WorkerPoolArgs.failure_domains.{name}"]
    return []


@settings(max_examples=100, deadline=None)
@given(names=st.lists(st.sampled_from(["cp-w-0", "cp-w-1", "cp-w-2", "CP_W"]), max_size=4),
       pool=st.sampled_from(["general", "gpu-1", "", "GPU", "-x"]),
       labels=st.dictionaries(st.sampled_from(["tier", "example.com/zone", "bad key!"]),
                              st.sampled_from(["a", "", "bad value!"]), max_size=2),
       domains=st.dictionaries(st.sampled_from(["cp-w-0", "cp-w-1", "zz"]), st.sampled_from(["rack-a", ""]),
                               max_size=2),
       registry=st.booleans(), certificate=st.booleans())
def test_worker_pool_args_hold_the_stacks_rules_and_their_control_plane(
        names: list[str], pool: str, labels: dict[str, str], domains: dict[str, str], registry: bool,
        certificate: bool) -> None:
    mirror = RegistryMirror("registry.cp.example") if registry else None

    def build() -> WorkerPoolArgs:
        return WorkerPoolArgs(
            workers=[plain_target(n, f"10.52.0.{31 + i}") for i, n in enumerate(names)],
            kubernetes=replace(kubernetes("cp", 52), registry=mirror), pool=pool, bootstrap_token="t",
            discovery_hash="h", control_plane=joined_control_plane(), labels=labels, failure_domains=domains,
            registry_certificate="-----BEGIN CERTIFICATE-----" if certificate else None)

    expected = expected_pool(names, pool, labels, domains, registry, certificate)
    if expected and isinstance(expected[0], tuple):  # the stack's rules: every problem, in its words
        assert sorted(problems(build)) == sorted(expected)
    else:
        assert refused(build) == expected
    if not expected:
        assert [t.name for t in build().workers] == names


def test_worker_pool_args_check_against_their_control_plane() -> None:
    def program() -> None:
        control_plane = ControlPlane("cp", control_plane_args("cp", 51, workers=["cp-w-0", "cp-w-1"]))
        good = pool_args("cp", 51, control_plane, ["cp-w-0", "cp-w-1"])
        WorkerPoolComponent("pool", good)
        with pytest.raises(ValueError, match=r"^WorkerPoolArgs\.pool: '' is not a DNS-1123 label"):
            replace(good, pool="")
        with pytest.raises(ValueError, match=r"WorkerPoolArgs.failure_domains: no worker named 'cp-w-7'"):
            replace(good, failure_domains={"cp-w-7": "rack"})
        with pytest.raises(ValueError, match=r"WorkerPoolArgs\.workers: two hosts share a name"):
            replace(good, workers=[*good.workers, good.workers[0]])

    assert run_under_mocks(program).graph.named("cp-w-1-k8s-membership")


# ---- HarborRegistryArgs ----------------------------------------------------------------------------


def harbor_refuses(password: str) -> bool:
    """Whether harbor.yml's own model would refuse `password` (the oracle for both passwords)."""
    try:
        DatabaseSection(password=password, max_idle_conns=0, max_open_conns=0, conn_max_lifetime="5m",
                        conn_max_idle_time=0)
    except ValidationError:
        return True
    return False


PASSWORDS = st.one_of(st.text(max_size=12), st.sampled_from(["Harbor12345", "root123", "a long enough one"]))


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(["harbor", "h-1", "Harbor_1", ""]), admin=PASSWORDS, database=PASSWORDS)
def test_harbor_registry_args_hold_the_stacks_node_rules_and_harbor_yml_passwords(
        name: str, admin: str, database: str) -> None:
    def build() -> HarborRegistryArgs:
        return HarborRegistryArgs(host=plain_target(name, "10.0.3.40"),
                                  config=HarborConfig(host="h.example", installer_sha256=SHA256),
                                  tls_cert="c", tls_key="k", admin_password=admin, db_password=database)

    node = problems(lambda: HarborSpec(node={"name": name, "ip": "10.0.3.40"}))
    expected = [p for p, _ in rooted(node, "HarborRegistryArgs", {"node": "host"})]
    expected += [f"HarborRegistryArgs.{field}" for field, password in (("admin_password", admin),
                                                                       ("db_password", database))
                 if harbor_refuses(password)]
    assert refused(build) == expected
    if not expected:
        assert build().admin_password == admin


def test_harbor_passwords_read_as_harbor_yml_says() -> None:
    def harbor(password: str) -> HarborRegistryArgs:
        return HarborRegistryArgs(host=plain_target("h", "10.0.3.40"),
                                  config=HarborConfig(host="h.example", installer_sha256=SHA256),
                                  tls_cert="c", tls_key="k", admin_password=password, db_password="a db password")

    with pytest.raises(ValueError, match=r"^HarborRegistryArgs\.admin_password: must be at least 8 characters$"):
        harbor("short")
    with pytest.raises(ValueError, match=r"^HarborRegistryArgs\.admin_password: is Harbor's published default"):
        harbor("Harbor12345")
    assert harbor("a long enough password").admin_password == "a long enough password"
    with pytest.raises(ValueError, match=r"^HarborConfig\.host: '' is not a DNS name$"):
        HarborConfig(host="", installer_sha256=SHA256)


# ---- Target ----------------------------------------------------------------------------------------


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


# ---- a misspelt keyword ------------------------------------------------------------------------------


def _kwargs(config: object) -> dict[str, Any]:
    """What builds `config` again, as keywords."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init}  # type: ignore[arg-type]


def _front_door() -> FrontDoor:
    return FrontDoor(vip=ipaddress.IPv4Address("10.0.2.10"), prefix=24,
                     apiservers=(Endpoint("m0", ipaddress.IPv4Address("10.0.2.5")),))


def _harbor_args() -> HarborRegistryArgs:
    return HarborRegistryArgs(host=plain_target("h", "10.0.3.40"),
                              config=HarborConfig(host="h.example", installer_sha256=SHA256),
                              tls_cert="c", tls_key="k", admin_password="a long enough one",
                              db_password="a db password")


def _pool_args() -> WorkerPoolArgs:
    return WorkerPoolArgs(workers=[plain_target(n, f"10.52.0.{31 + i}") for i, n in enumerate(JOINING)],
                          kubernetes=kubernetes("cp", 52), pool="general", bootstrap_token="t",
                          discovery_hash="h", control_plane=joined_control_plane())


# (a valid value of the class, its field, the misspelling, the component that takes it if any)
MISSPELT: dict[str, tuple[Callable[[], object], str, str, Callable[[Any], object] | None]] = {
    "ExternalEtcdArgs": (lambda: etcd(NAMES[:3]), "hosts", "hostz", lambda a: ExternalEtcd("typo", a)),
    "MemberTls": (lambda: MemberTls("cert", "key", "cert", "key"), "peer_key", "peer_kye", None),
    "HaproxyKeepalivedPairArgs": (lambda: pair("10.0.2.10"), "front_door", "frontdoor",
                                  lambda a: HaproxyKeepalivedPair("typo", a)),
    "ControlPlaneArgs": (lambda: control_plane_args("cp", 53, workers=[]), "discovery_hash", "discovery_hsh",
                         lambda a: ControlPlane("typo", a)),
    "WorkerPoolArgs": (_pool_args, "failure_domains", "failureDomains", lambda a: WorkerPoolComponent("typo", a)),
    "HarborRegistryArgs": (_harbor_args, "admin_password", "admin_pasword", lambda a: HarborRegistry("typo", a)),
    "Target": (lambda: plain_target("t", "10.0.4.1"), "ready", "redy", None),
    "FrontDoor": (_front_door, "vrrp_version", "vrrp_verison", None),
    "LoadBalancerConfig": (lambda: pair_config(pair("10.0.2.10")), "pair", "Pair", None),
    "EtcdSettings": (lambda: EtcdSettings(version="3.6.14"), "heartbeat_interval_ms", "heartbeat_interval",
                     None),
    "HarborConfig": (lambda: HarborConfig(host="h.example", installer_sha256=SHA256), "installer_sha256",
                     "installer_sha", None),
    "KubernetesConfig": (lambda: kubernetes("cp", 52), "etcd_endpoints", "etcd_endpoint", None),
    "RegistryMirror": (lambda: RegistryMirror("h.example"), "proxy_cache", "proxycache", None),
    "Endpoint": (lambda: Endpoint("m0", ipaddress.IPv4Address("10.0.2.5")), "ip", "IP", None),
}


@pytest.mark.parametrize("name", MISSPELT)
def test_a_misspelt_keyword_is_refused_with_the_nearest_field_before_anything_registers(name: str) -> None:
    valid, field_name, typo, component = MISSPELT[name]
    config = valid()
    cls = type(config)
    assert cls.__name__ == name
    kwargs = _kwargs(config)
    assert cls(**kwargs) == config  # the keywords as given build it: only the misspelling is wrong
    kwargs[typo] = kwargs.pop(field_name)
    errors: list[UnknownFieldError] = []

    def program() -> None:
        with pytest.raises(UnknownFieldError) as caught:
            args = cls(**kwargs)
            if component is not None:
                component(args)
        errors.append(caught.value)

    run = run_under_mocks(program)
    [error] = errors
    assert isinstance(error, TypeError) and isinstance(error, SpecError)  # Python's type, and the Args' own
    assert str(error) == f"{name}.{typo}: unknown field {typo!r}: did you mean {field_name!r}?"
    assert [u for u in run.urns if "::pulumi:pulumi:Stack::" not in u] == [], "nothing may be registered"


def test_every_args_class_of_the_components_refuses_a_misspelt_keyword() -> None:
    """A new component's Args are in the table above, so they refuse misspellings too."""
    found = {cls.__name__ for module in (etcd_module, harbor_module, lb_module, cp_module, workers_module)
             for cls in vars(module).values()
             if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__name__.endswith("Args")}
    assert len(found) == 5 and found <= MISSPELT.keys()


def test_every_unknown_keyword_is_listed_at_once_and_positional_construction_stays() -> None:
    with pytest.raises(UnknownFieldError) as caught:
        ExternalEtcdArgs(hostz=hosts(NAMES[:3]), setings=EtcdSettings(version="3.6.14"), cacert="ca",  # type: ignore[call-arg]
                         member_tls={}, healthcheck_cert="cert", zzz=1)
    assert [str(p) for p in caught.value.problems] == [
        "ExternalEtcdArgs.cacert: unknown field 'cacert': did you mean 'ca_cert'?",
        "ExternalEtcdArgs.healthcheck_key: is required",  # left out, and no unknown keyword stands for it
        "ExternalEtcdArgs.hostz: unknown field 'hostz': did you mean 'hosts'?",
        "ExternalEtcdArgs.setings: unknown field 'setings': did you mean 'settings'?",
        "ExternalEtcdArgs.zzz: unknown field 'zzz' (known fields here: after, ca_cert, client_cert, client_key, "
        "disk_gib, healthcheck_cert, healthcheck_key, hosts, member_tls, settings)",
    ]
    assert str(caught.value).startswith("ExternalEtcdArgs has 5 problem(s):\n  ExternalEtcdArgs.cacert: ")
    tls = MemberTls("server cert", "server key", "peer cert", "peer key")
    assert (tls.server_cert, tls.peer_key) == ("server cert", "peer key")
    with pytest.raises(UnknownFieldError, match=r"^MemberTls\.peer_kye: unknown field 'peer_kye': did you mean "):
        MemberTls("a", "b", "c", peer_kye="d")  # type: ignore[call-arg]
    settings = EtcdSettings(version="3.6.14")
    with pytest.raises(TypeError, match=r"^EtcdSettings\.clustr: unknown field 'clustr': did you mean 'cluster'\?$"):
        replace(settings, clustr="x")  # type: ignore[call-arg]
    assert replace(settings, cluster="payments").cluster == "payments"


def test_target_ssh_refuses_a_misspelt_keyword_with_the_nearest_one() -> None:
    """`Target.ssh` is how a user of one component names a machine: a misspelt keyword there is met
    the way the Args meet one, not with Python's bare 'unexpected keyword argument'."""
    with pytest.raises(UnknownFieldError) as caught:
        Target.ssh("etcd-a", "10.0.0.11", hostkey="ssh-ed25519 AAAA", private_kye="key")  # type: ignore[call-arg]
    assert isinstance(caught.value, TypeError)
    assert [str(p) for p in caught.value.problems] == [
        "Target.ssh.hostkey: unknown keyword 'hostkey': did you mean 'host_key'?",
        "Target.ssh.private_kye: unknown keyword 'private_kye': did you mean 'private_key'?",
    ]
    missing_key = r"^Target\.ssh has 2 problem\(s\):\n  Target\.ssh\.host_key: is required"
    with pytest.raises(UnknownFieldError, match=missing_key):
        Target.ssh("etcd-a", "10.0.0.11", private_ky="key")  # type: ignore[call-arg]
    target = Target.ssh("etcd-a", "10.0.0.11", host_key="ssh-ed25519 AAAA", private_key="key", port=2222)
    assert (target.name, str(target.ip), target.access.port) == ("etcd-a", "10.0.0.11", 2222)
