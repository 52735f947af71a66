"""The plain-value configs a user passes to the components (`FrontDoor`, `LoadBalancerConfig`,
`EtcdSettings`, `HarborConfig`, `KubernetesConfig`) run the stack file's own rules when they are
built: generated values get the stack file's verdict, in its words, at the config's field, and
wrong values fail at construction instead of in a step on a host."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k8s_ha.model.errors import SpecError
from k8s_ha.model.spec import parse_stack
from k8s_ha.model.stackfile import read_stack_file
from k8s_ha.render.etcd import EtcdSettings
from k8s_ha.render.harbor import HarborConfig
from k8s_ha.render.kubernetes import KubernetesConfig, RegistryMirror
from k8s_ha.render.loadbalancer import FrontDoor, LoadBalancerConfig
from k8s_ha.render.members import Endpoint
from tests.conftest import ROOT

SHA256 = "a" * 64
VIP = ipaddress.IPv4Address("10.20.0.10")
APISERVERS = (Endpoint("m1", ipaddress.IPv4Address("10.20.0.31")),)
ETCD = ("https://10.20.0.21:2379",)
LABELS = st.sampled_from(["prod", "a-b", "x", "Bad Name!", "-x", "a" * 64, ""])


def problems(build: Callable[[], object]) -> set[tuple[str, str]]:
    try:
        build()
    except SpecError as error:
        return {(p.path, p.message) for p in error.problems}
    return set()


@cache
def _prod() -> dict[str, Any]:
    return read_stack_file(ROOT / "Pulumi.prod.yaml").config


def stack_verdict(edit: Callable[[dict[str, Any]], object], paths: dict[str, str]) -> set[tuple[str, str]]:
    """What the stack file says once `edit` changed the prod stack, at the keys `paths` maps to a
    config's fields (stack path -> config path)."""
    config = copy.deepcopy(_prod())
    edit(config)
    try:
        parse_stack(config)
    except SpecError as error:
        return {(paths[p.path], p.message) for p in error.problems if p.path in paths}
    return set()


# ---- the audit's cases: accepted before, failing later ----------------------------------------


def test_what_used_to_fail_later_fails_at_construction() -> None:
    with pytest.raises(SpecError) as door:
        FrontDoor(vip=VIP, prefix=24, apiservers=APISERVERS, vrrp_version=7, advert_interval_ms=-1)  # type: ignore[arg-type]
    assert [str(p) for p in door.value.problems] == [
        "FrontDoor.vrrpVersion: Input should be 2 or 3",
        "FrontDoor.advertIntervalMs: VRRPv3 adverts are in centiseconds: use a multiple of 10 ms",
    ]
    assert isinstance(door.value, ValueError)
    with pytest.raises(ValueError, match=r"^EtcdSettings\.heartbeatIntervalMs: -5 is outside 10\.\.10000$"):
        EtcdSettings(version="3.6.14", heartbeat_interval_ms=-5)
    with pytest.raises(ValueError, match=r"^EtcdSettings\.electionTimeoutMs: 1000000000 is outside 50\.\.50000$"):
        EtcdSettings(version="3.6.14", election_timeout_ms=10**9)
    with pytest.raises(SpecError) as harbor:
        HarborConfig(host="h.example", version="0.0.1", installer_sha256="zz")
    assert [str(p) for p in harbor.value.problems] == [
        "HarborConfig.version: Harbor 0.0.1 is not supported (2.10 or later)",
        "HarborConfig.installerSha256: must be 64 lowercase hex digits",
    ]
    with pytest.raises(SpecError) as kubernetes:
        KubernetesConfig(vip=VIP, etcd_endpoints=(), cluster="Bad Name!")
    assert [str(p) for p in kubernetes.value.problems] == [
        "KubernetesConfig.cluster: 'Bad Name!' is not a DNS-1123 label (lowercase letters, digits and '-', "
        "starting and ending with a letter or digit, at most 63 characters)",
        "KubernetesConfig.etcdEndpoints: needs at least one etcd client URL, such as https://10.0.0.11:2379",
    ]
    assert str(kubernetes.value).startswith("KubernetesConfig has 2 problem(s):\n  KubernetesConfig.cluster: ")


def test_a_pair_whose_address_is_the_vip_is_refused_by_the_config_that_knows_the_pair() -> None:
    door = FrontDoor(vip=VIP, prefix=24, apiservers=APISERVERS)
    pair = (Endpoint("lb1", VIP), Endpoint("lb2", ipaddress.IPv4Address("10.20.0.12")))
    with pytest.raises(ValueError, match=r"^LoadBalancerConfig\.pair\[0\]\.ip: 10\.20\.0\.10 is already used by "
                                         r"door\.vip$"):
        LoadBalancerConfig(door, pair)
    with pytest.raises(ValueError, match=r"^FrontDoor\.apiservers\[0\]\.ip: 10\.20\.0\.10 is already used by vip$"):
        FrontDoor(vip=VIP, prefix=24, apiservers=(Endpoint("m1", VIP),))
    with pytest.raises(ValueError, match=r"^LoadBalancerConfig\.pair: needs exactly 2 load-balancer nodes"):
        LoadBalancerConfig(door, pair[1:])  # type: ignore[arg-type]


def test_nested_settings_refuse_unknown_keys_with_the_nearest_name() -> None:
    with pytest.raises(ValueError, match=r"^FrontDoor\.haproxy\.fal: unknown key 'fal': did you mean 'fall'\?$"):
        FrontDoor(vip=VIP, prefix=24, apiservers=APISERVERS, haproxy={"fal": 2})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^EtcdSettings\.backup\.retian: unknown key 'retian': did you mean "):
        EtcdSettings(version="3.6.14", backup={"retian": 3})  # type: ignore[arg-type]


def test_values_are_kept_as_the_stack_types_them() -> None:
    door = FrontDoor(vip="10.20.0.10", prefix=24, apiservers=(Endpoint("m1", "10.20.0.31"),),  # type: ignore[arg-type]
                     haproxy={"fall": 3})  # type: ignore[arg-type]
    assert door.vip == VIP and door.apiservers[0].ip == ipaddress.IPv4Address("10.20.0.31")
    assert door.haproxy.fall == 3 and door.network == ipaddress.IPv4Network("10.20.0.0/24")
    config = KubernetesConfig(vip="10.20.0.10", etcd_endpoints=ETCD, versions={"kubernetes": "1.35.8"})  # type: ignore[arg-type]
    assert config.vip == VIP and config.versions.kubernetes == "1.35.8"


# ---- generated: the stack file's verdict, field by field ---------------------------------------


@settings(max_examples=80, deadline=None)
@given(vrrp=st.sampled_from([1, 2, 3, 7]),
       advert=st.one_of(st.integers(min_value=-20, max_value=50_000), st.sampled_from([10, 300, 1000, 40950, 40960])),
       router=st.one_of(st.none(), st.integers(min_value=-1, max_value=300)),
       interface=st.sampled_from(["eth0", "bond0.100", "eth 0", "x" * 16]), cluster=LABELS)
def test_a_front_door_gets_the_stack_files_verdict(vrrp: int, advert: int, router: int | None, interface: str,
                                                   cluster: str) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["loadBalancer"].update(vrrpVersion=vrrp, advertIntervalMs=advert, virtualRouterId=router)
        config["network"]["interface"] = interface
        config["cluster"]["name"] = cluster

    paths = {"loadBalancer.vrrpVersion": "FrontDoor.vrrpVersion", "network.interface": "FrontDoor.interface",
             "loadBalancer.advertIntervalMs": "FrontDoor.advertIntervalMs", "cluster.name": "FrontDoor.cluster",
             "loadBalancer.virtualRouterId": "FrontDoor.virtualRouterId"}
    found = problems(lambda: FrontDoor(vip=VIP, prefix=24, apiservers=APISERVERS, vrrp_version=vrrp,  # type: ignore[arg-type]
                                       advert_interval_ms=advert, virtual_router_id=router, interface=interface,
                                       cluster=cluster))
    assert found == stack_verdict(edit, paths)


@settings(max_examples=80, deadline=None)
@given(version=st.sampled_from(["3.6.14", "3.6.99", "3.5.1", "9.9.9", "x"]),
       heartbeat=st.one_of(st.integers(min_value=-10, max_value=12_000), st.sampled_from([10, 100, 10_000])),
       election=st.one_of(st.integers(min_value=-10, max_value=60_000), st.sampled_from([50, 500, 50_000])),
       cluster=LABELS)
def test_etcd_settings_get_the_stack_files_verdict(version: str, heartbeat: int, election: int, cluster: str) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["etcd"].update(heartbeatIntervalMs=heartbeat, electionTimeoutMs=election)
        config["versions"] = {"etcd": version}
        config["cluster"]["name"] = cluster

    paths = {"etcd.heartbeatIntervalMs": "EtcdSettings.heartbeatIntervalMs", "versions.etcd": "EtcdSettings.version",
             "etcd.electionTimeoutMs": "EtcdSettings.electionTimeoutMs", "cluster.name": "EtcdSettings.cluster"}
    found = problems(lambda: EtcdSettings(version=version, heartbeat_interval_ms=heartbeat,
                                          election_timeout_ms=election, cluster=cluster))
    assert found == stack_verdict(edit, paths)


@settings(max_examples=80, deadline=None)
@given(version=st.sampled_from(["2.12.2", "2.10.0", "2.9.5", "0.0.1", "3.0.0", "v2.13.1"]),
       sha256=st.sampled_from([SHA256, "zz", "A" * 64, None]),
       url=st.sampled_from(["https://mirror.example/harbor-{version}.tgz", "ftp://x", "file:///srv/h.tgz"]),
       host=st.sampled_from(["harbor.prod.example", "10.20.0.40", "Harbor!", ""]), cluster=LABELS)
def test_a_harbor_config_gets_the_stack_files_verdict(version: str, sha256: str | None, url: str, host: str,
                                                      cluster: str) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["versions"] = {"harbor": version}
        config["mirrors"] = {"harborInstaller": url, **({"harborInstallerSha256": sha256} if sha256 else {})}
        config["harbor"]["hostname"] = host
        config["cluster"]["name"] = cluster

    paths = {"versions.harbor": "HarborConfig.version", "mirrors.harborInstaller": "HarborConfig.installerUrlTemplate",
             "mirrors.harborInstallerSha256": "HarborConfig.installerSha256", "harbor.hostname": "HarborConfig.host",
             "cluster.name": "HarborConfig.cluster"}
    found = problems(lambda: HarborConfig(host=host, version=version, installer_url_template=url,
                                          installer_sha256=sha256, cluster=cluster))  # type: ignore[arg-type]
    assert found == stack_verdict(edit, paths)


ENDPOINTS = st.lists(st.sampled_from(["https://10.20.0.21:2379", "https://etcd-a.example:2379",
                                      "http://10.20.0.21:2379", "10.20.0.21:2379", "https://10.20.0.21"]),
                     max_size=3)


@settings(max_examples=80, deadline=None)
@given(version=st.sampled_from(["1.36.4", "1.35.8", "1.37.2", "1.34.0", "x"]), cluster=LABELS, endpoints=ENDPOINTS,
       registry=st.sampled_from([None, "harbor.prod.example", "Harbor!"]))
def test_a_kubernetes_config_gets_the_stack_files_verdict(version: str, cluster: str, endpoints: list[str],
                                                          registry: str | None) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["versions"] = {"kubernetes": version}
        config["cluster"]["name"] = cluster
        config["harbor"]["hostname"] = registry or "harbor.prod.example"

    paths = {"versions.kubernetes": "KubernetesConfig.versions.kubernetes", "cluster.name": "KubernetesConfig.cluster",
             "harbor.hostname": "KubernetesConfig.registry.host"}
    stack = stack_verdict(edit, paths)
    bad = [url for url in endpoints if not url.startswith("https://") or url.count(":") != 2]
    if not endpoints:
        stack.add(("KubernetesConfig.etcdEndpoints",
                   "needs at least one etcd client URL, such as https://10.0.0.11:2379"))
    elif bad:
        stack.add(("KubernetesConfig.etcdEndpoints", f"{bad} are not etcd client URLs such as https://10.0.0.11:2379"))
    mirror = RegistryMirror(registry) if registry else None
    found = problems(lambda: KubernetesConfig(vip=VIP, etcd_endpoints=tuple(endpoints), cluster=cluster,
                                              versions={"kubernetes": version}, registry=mirror))  # type: ignore[arg-type]
    assert found == stack
