"""One validation for the stack file and for Python: every problem at once, each at its path.

A type error used to hide every later check; a misspelt key got only "is required"; a model built
from Python checked nothing. These tests hold the three together."""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any

import pytest

from k8s_ha.model.errors import Problem, SpecError
from k8s_ha.model.spec import (
    EtcdSpec,
    HaproxyCheck,
    LoadBalancerSpec,
    Model,
    StackSpec,
    Versions,
    address_problems,
    parse_stack,
)
from k8s_ha.model.stackfile import read_stack_file
from k8s_ha.placement.plan import load_plan
from tests.conftest import ROOT


def prod() -> dict[str, Any]:
    return copy.deepcopy(read_stack_file(ROOT / "Pulumi.prod.yaml").config)


def problems(config: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_stack(config)
    return [str(p) for p in info.value.problems]


def test_a_type_error_hides_no_other_check() -> None:
    config = prod()
    config["kubernetes"] = {"podCidr": "10.244.0.0/33"}  # not a network at all
    config["etcd"]["nodes"][0]["ip"] = "172.16.0.5"  # outside the (valid) node network
    config["workerPools"][0]["count"] = -2
    assert problems(config) == [
        "etcd.nodes[0].ip: 172.16.0.5 is outside the node network 10.20.0.0/24",
        "kubernetes.podCidr: Input is not a valid IPv4 network",
        "workerPools[0].count: -2 is outside 0..5000",
    ]


def test_a_rule_needing_a_field_that_failed_is_left_out_and_the_others_still_run() -> None:
    config = prod()
    config["etcd"].update(heartbeatIntervalMs="fast", electionTimeoutMs=20)  # the ratio rule needs both
    config["etcd"]["nodes"].pop()  # 4 members: the count rule needs only the nodes
    found = problems(config)
    assert found[0].startswith("etcd.heartbeatIntervalMs: Input should be a valid integer")
    assert "etcd.electionTimeoutMs: 20 is outside 50..50000" in found
    assert any(p.startswith("etcd.nodes: 4 members: use 3, 5 or 7") for p in found)
    assert not any("at least 5x heartbeatIntervalMs" in p for p in found)


def test_a_missing_section_still_lets_the_other_nodes_be_checked() -> None:
    config = prod()
    config["controlplane"] = config.pop("controlPlane")
    config["etcd"]["nodes"][1]["ip"] = "10.20.0.255"
    assert problems(config) == [
        "controlPlane: is required",
        "controlplane: unknown key 'controlplane': did you mean 'controlPlane'?",
        "etcd.nodes[1].ip: 10.20.0.255 is the broadcast address of 10.20.0.0/24",
    ]


def test_misspelt_nested_keys_name_the_key_they_meant() -> None:
    config = prod()
    config["loadBalancer"]["haproxy"] = {"checkIntervalMS": 500, "fal": 2}
    config["etcd"]["backup"]["retian"] = 3
    assert problems(config) == [
        "etcd.backup.retian: unknown key 'retian': did you mean 'retain'?",
        "loadBalancer.haproxy.checkIntervalMS: unknown key 'checkIntervalMS': did you mean 'checkIntervalMs'?",
        "loadBalancer.haproxy.fal: unknown key 'fal': did you mean 'fall'?",
    ]


def test_a_misspelt_namespace_says_which_it_uses_and_which_is_expected(tmp_path: Path) -> None:
    text = (ROOT / "Pulumi.prod.yaml").read_text().replace("k8s-ha:controlPlane:", "k8sha:controlPlane:")
    stack = tmp_path / "Pulumi.prod.yaml"
    stack.write_text(text)
    with pytest.raises(SpecError) as info:
        load_plan(stack)
    assert [str(p) for p in info.value.problems] == [  # the cause first, then what it leads to
        "k8sha:controlPlane: namespace 'k8sha' is not this project's: the stack file uses 'k8sha' for 1 key(s), "
        "this project reads 'k8s-ha' (the name in Pulumi.yaml); write them as 'k8s-ha:<key>'",
        "controlPlane: is required",
    ]


def test_a_whole_file_under_another_project_name_is_named(tmp_path: Path) -> None:
    text = (ROOT / "Pulumi.dev.yaml").read_text().replace("k8s-ha:", "mycluster:")
    raw_problems = read_stack_file(_write(tmp_path, text)).problems
    assert len(raw_problems) == 1 and "the stack file uses 'mycluster'" in raw_problems[0].message
    # A provider's namespace beside ours is not a misspelling.
    text = (ROOT / "Pulumi.dev.yaml").read_text() + "  libvirt:uri: qemu:///system\n  kubernetes:context: x\n"
    assert read_stack_file(_write(tmp_path, text)).problems == ()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text(text)
    return path


def test_python_construction_runs_the_same_rules() -> None:
    with pytest.raises(SpecError) as info:
        HaproxyCheck(fal=5, interval_s=-3)  # type: ignore[call-arg]
    assert [str(p) for p in info.value.problems] == [
        "fal: unknown key 'fal': did you mean 'fall'?",
        "intervalS: -3 is outside 1..60",
        "timeoutS: must not exceed intervalS (keepalived skips a run while the last one is still running)",
    ]
    assert isinstance(info.value, ValueError)
    with pytest.raises(SpecError, match=r"etcd: etcd 9\.9\.9 is not supported \(3\.6 or 3\.7\)"):
        Versions(etcd="9.9.9")
    # snake_case spellings suggest the Python name
    with pytest.raises(SpecError, match="unknown key 'interval_ss': did you mean 'interval_s'"):
        HaproxyCheck(interval_ss=2)  # type: ignore[call-arg]


def test_a_plain_config_reports_the_same_text_under_its_own_field() -> None:
    """A component's config built from Python holds the model's rules, not a copy of them."""
    from k8s_ha.render.loadbalancer import FrontDoor

    with pytest.raises(SpecError) as direct:
        HaproxyCheck.parse({"fal": 5, "intervalS": -3})
    with pytest.raises(SpecError) as door:
        FrontDoor(vip=ipaddress.IPv4Address("10.0.0.10"), prefix=24, apiservers=(),
                  haproxy_check={"fal": 5, "intervalS": -3})  # type: ignore[arg-type]
    assert door.value.problems == [Problem(f"FrontDoor.haproxyCheck.{p.path}", p.message)
                                   for p in direct.value.problems]


def test_the_stack_file_reports_the_same_text_at_the_longer_path() -> None:
    config = prod()
    config["loadBalancer"]["haproxyCheck"] = {"fal": 5, "intervalS": -3}
    with pytest.raises(SpecError) as direct:
        HaproxyCheck.parse({"fal": 5, "intervalS": -3})
    expected = [f"loadBalancer.haproxyCheck.{p}" for p in direct.value.problems]
    assert problems(config) == expected


def test_nested_models_built_from_python_report_every_level() -> None:
    nodes = [{"name": "lb1", "ip": "10.0.0.2", "vcpuu": 2}]
    with pytest.raises(SpecError) as info:
        LoadBalancerSpec(nodes=nodes, haproxy_check=HaproxyCheck(), advert_interval_ms=55)  # type: ignore[arg-type]
    assert [str(p) for p in info.value.problems] == [
        "advertIntervalMs: VRRPv3 adverts are in centiseconds: use a multiple of 10 ms",
        "nodes[0].vcpuu: unknown key 'vcpuu': did you mean 'vcpu'?",
        "nodes: needs exactly 2 load-balancer nodes (a keepalived MASTER and BACKUP), got 1",
    ]
    with pytest.raises(SpecError, match="at least 5x heartbeatIntervalMs"):
        EtcdSpec(nodes=[], election_timeout_ms=100, heartbeat_interval_ms=100)


def test_a_valid_model_carries_no_problems_and_stays_usable() -> None:
    check = HaproxyCheck(interval_s=3, timeout_s=2)
    assert (check.interval_s, check.timeout_s, check.fall) == (3, 2, 1)
    raw = read_stack_file(ROOT / "Pulumi.dev.yaml")
    spec = parse_stack(raw.config, raw.secret_keys)
    assert not spec.has_problems() and not spec.load_balancer.has_problems()


def test_the_address_rule_is_one_for_the_stack_and_a_front_door() -> None:
    net, vip = ipaddress.IPv4Network("10.0.0.0/24"), ipaddress.IPv4Address("10.0.0.10")
    pair = [("pair[0]", ipaddress.IPv4Address("10.0.0.10")), ("pair[1]", ipaddress.IPv4Address("10.0.1.3"))]
    assert [str(p) for p in address_problems(net, vip, pair, vip_path="vip")] == [
        "pair[0]: 10.0.0.10 is already used by vip",
        "pair[1]: 10.0.1.3 is outside the node network 10.0.0.0/24",
    ]


def test_every_rule_names_fields_that_exist() -> None:
    """A rule skipped for a failed field must name it right, or it would read a missing one."""
    models = [m for m in vars(__import__("k8s_ha.model.spec", fromlist=["x"])).values()
              if isinstance(m, type) and issubclass(m, Model) and m is not Model]
    assert StackSpec in models
    for model in models:
        for method in model._rules:
            unknown = method.__rule_fields__ - set(model.model_fields)  # type: ignore[attr-defined]
            assert not unknown, f"{model.__name__}.{method.__name__}: {unknown}"


def test_harbor_and_a_mirror_for_the_same_registry_are_refused_by_validate_until_the_stack_chooses() -> None:
    config = prod()  # Harbor with its proxy cache
    config["artifacts"] = {"imageRegistry": "10.20.0.5:5000"}
    config["workerPools"][0]["count"] = -2  # reported in the same run
    found = problems(config)
    assert found[0].startswith("artifacts.imageRegistryPrecedence: images from ['quay.io', 'registry.k8s.io'] "
                               "would come both through Harbor's proxy cache (harbor.proxyCache) and from the "
                               "image registry mirror 10.20.0.5:5000 (artifacts.imageRegistry): say which wins")
    assert "workerPools[0].count: -2 is outside 0..5000" in found
    for winner in ("mirror", "harbor"):
        config = prod()
        config["artifacts"] = {"imageRegistry": "10.20.0.5:5000", "imageRegistryPrecedence": winner}
        parse_stack(config)
    config = prod()
    config["artifacts"] = {"imageRegistryPrecedence": "mirror"}
    assert problems(config) == ["artifacts.imageRegistryPrecedence: describes artifacts.imageRegistry, "
                                "which is not set"]
    config["artifacts"] = {"imageRegistry": "10.20.0.5:5000", "imageRegistryPrecedence": "upstream"}
    assert problems(config)[0].startswith("artifacts.imageRegistryPrecedence: Input should be 'mirror' or 'harbor'")
