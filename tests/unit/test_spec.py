"""Every spec rule, valid and invalid, reported as `config.path: message` and all at once."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8s_ha.model.errors import SpecError
from k8s_ha.model.spec import parse_stack, quorum
from k8s_ha.model.stackfile import read_stack_file

ROOT = Path(__file__).resolve().parents[2]


def prod() -> dict[str, Any]:
    return copy.deepcopy(read_stack_file(ROOT / "Pulumi.prod.yaml").config)


def problems(config: dict[str, Any], secrets: frozenset[str] = frozenset()) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_stack(config, secrets)
    return [str(p) for p in info.value.problems]


def one_problem(config: dict[str, Any]) -> str:
    found = problems(config)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("stack", ["Pulumi.dev.yaml", "Pulumi.prod.yaml", "Pulumi.staging.yaml"])
def test_examples_are_valid(stack: str) -> None:
    raw = read_stack_file(ROOT / stack)
    spec = parse_stack(raw.config, raw.secret_keys)
    assert spec.cluster.name == stack.split(".")[1]


@pytest.mark.parametrize("count", [1, 2, 4, 6])
def test_etcd_member_count_must_be_3_5_or_7(count: int) -> None:
    config = prod()
    nodes = [{"name": f"etcd{i}", "ip": f"10.20.0.{21 + i}"} for i in range(count)]
    config["etcd"]["nodes"] = nodes
    message = one_problem(config)
    assert message.startswith("etcd.nodes: ")
    assert f"{count} members" in message and "3, 5 or 7" in message
    assert "3->1" in message and "4->1" in message  # the quorum table explains why


def test_quorum_table_matches_seed_000() -> None:
    # etcd: total / minimum alive: 1/1 2/2 3/2 4/3 5/3 6/4 7/4 8/5 9/5
    assert [quorum(n) for n in range(1, 10)] == [1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_duplicate_ip_names_the_first_user() -> None:
    config = prod()
    config["etcd"]["nodes"][3]["ip"] = "10.20.0.11"
    assert one_problem(config) == "etcd.nodes[3].ip: 10.20.0.11 is already used by loadBalancer.nodes[0]"


def test_duplicate_names() -> None:
    config = prod()
    config["controlPlane"]["nodes"][2]["name"] = "etcd1"
    assert one_problem(config) == "controlPlane.nodes[2].name: node name 'etcd1' is already used by etcd.nodes[0]"


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("10.30.0.5", "is outside the node network 10.20.0.0/24"),
        ("10.20.0.0", "is the network address of 10.20.0.0/24"),
        ("10.20.0.255", "is the broadcast address of 10.20.0.0/24"),
        ("10.20.0.1", "is the gateway of 10.20.0.0/24"),
        ("10.20.0.10", "is already used by network.vip"),
    ],
)
def test_node_ip_rules(ip: str, expected: str) -> None:
    config = prod()
    config["controlPlane"]["nodes"][0]["ip"] = ip
    assert one_problem(config) == f"controlPlane.nodes[0].ip: {ip} {expected}"


@pytest.mark.parametrize(
    ("vip", "expected"),
    [("192.168.1.10", "is outside 10.20.0.0/24"), ("10.20.0.1", "is the gateway of 10.20.0.0/24")],
)
def test_vip_rules(vip: str, expected: str) -> None:
    config = prod()
    config["network"]["vip"] = vip
    assert one_problem(config) == f"network.vip: {vip} {expected}"


def test_vip_already_used_by_a_node() -> None:
    config = prod()
    config["network"]["vip"] = "10.20.0.31"
    assert one_problem(config) == "controlPlane.nodes[0].ip: 10.20.0.31 is already used by network.vip"


def test_cidr_overlaps() -> None:
    config = prod()
    config["kubernetes"] = {"podCidr": "10.96.0.0/16", "serviceCidr": "10.96.0.0/12"}
    assert problems(config) == ["kubernetes.serviceCidr: 10.96.0.0/12 overlaps podCidr 10.96.0.0/16"]
    config["kubernetes"] = {"podCidr": "10.20.0.0/16"}
    assert problems(config) == ["kubernetes.podCidr: 10.20.0.0/16 overlaps the node network 10.20.0.0/24"]


def test_network_cidr_must_be_a_network_address() -> None:
    config = prod()
    config["network"]["cidr"] = "10.20.0.5/24"
    assert problems(config)[0].startswith("network.cidr: ")


def test_unknown_hypervisor_reference() -> None:
    config = prod()
    config["etcd"]["nodes"][0]["hypervisor"] = "hv9"
    assert one_problem(config) == "etcd.nodes[0].hypervisor: unknown hypervisor 'hv9' (known: hv1, hv2, hv3)"


@pytest.mark.parametrize("name", ["CP1", "cp_1", "-cp", "cp-", "a" * 64, ""])
def test_names_must_be_dns_labels(name: str) -> None:
    config = prod()
    config["controlPlane"]["nodes"][0]["name"] = name
    assert one_problem(config).startswith("controlPlane.nodes[0].name: ")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("kubernetes", "1.20.1", "Kubernetes 1.20.1 is not supported"),
        ("kubernetes", "latest", "is not a version"),
        ("etcd", "3.3.9", "etcd 3.3.9 is not supported"),
        ("containerd", "0.9.0", "containerd 0.9.0 is not supported"),
    ],
)
def test_unsupported_versions(field: str, value: str, expected: str) -> None:
    config = prod()
    config["versions"] = {field: value}
    message = one_problem(config)
    assert message.startswith(f"versions.{field}: ") and expected in message


def test_containerd_1_is_refused_from_kubernetes_1_36_with_the_reason() -> None:
    config = prod()
    config["versions"] = {"containerd": "1.7.28"}
    message = one_problem(config)
    assert message.startswith("versions.containerd: containerd 1.7.28 cannot run Kubernetes 1.36.4")
    assert "Kubernetes 1.35 was the last release on containerd 1.x" in message
    config["versions"] = {"kubernetes": "1.35.8", "containerd": "1.7.28",
                          "crictl": "1.35.0"}
    config["artifacts"] = {"checksums": {"containerd": {"1.7.28": "0" * 64}}}
    parse_stack(config)  # 1.35 still runs on containerd 1.x


def test_a_haproxy_check_timeout_beyond_its_interval_is_refused() -> None:
    config = prod()
    config["loadBalancer"]["haproxyCheck"] = {"intervalS": 2, "timeoutS": 3}
    assert one_problem(config).startswith("loadBalancer.haproxyCheck.timeoutS: must not exceed intervalS")


def test_failover_leader_election_must_be_ordered() -> None:
    config = prod()
    config["kubernetes"] = {"failover": {"leaderLeaseS": 10, "leaderRenewDeadlineS": 10}}
    message = one_problem(config)
    assert message.startswith("kubernetes.failover.leaderRenewDeadlineS: leader election needs retryPeriod")
    config["kubernetes"] = {"failover": {"nodeMonitorGracePeriodS": 700}}
    assert one_problem(config).startswith("kubernetes.failover.nodeMonitorGracePeriodS: 700 is outside 8..600")
    config["kubernetes"] = {"failover": {"nodeLeaseDurationS": 40, "nodeMonitorGracePeriodS": 20}}
    assert one_problem(config) == (
        "kubernetes.failover.nodeMonitorGracePeriodS: a node must be allowed 3 missed lease renewals before it is "
        "NotReady: the kubelet renews every nodeLeaseDurationS / 4 = 10 s, so the grace needs at least 30 s, "
        "got 20 s")
    config["kubernetes"] = {"failover": {"nodeMonitorPeriodS": 12}}
    assert one_problem(config).startswith("kubernetes.failover.nodeMonitorPeriodS: the node monitor must look")


def test_only_the_supported_window_is_accepted() -> None:
    for version in ("1.34.4", "1.38.0"):
        config = prod()
        config["versions"] = {"kubernetes": version}
        assert f"Kubernetes {version} is not supported (1.35 to 1.37" in one_problem(config)


def test_a_version_without_a_pinned_checksum_is_refused_by_component() -> None:
    config = prod()
    config["versions"] = {"kubernetes": "1.37.2"}  # newer than the upstream table
    found = problems(config)
    assert found[0].startswith("versions.kubernetes: no pinned sha256 for kubeadm 1.37.2")
    assert any("kubelet 1.37.2" in p for p in found) and any("kubectl 1.37.2" in p for p in found)
    # A private build's checksums make it installable.
    config["artifacts"] = {"checksums": {c: {"1.37.2": "a" * 64} for c in ("kubeadm", "kubelet", "kubectl")}}
    parse_stack(config)


def test_sizes_below_minimum_name_the_field() -> None:
    config = prod()
    config["controlPlane"]["nodes"][1].update(vcpu=1, memoryMib=1024)
    assert problems(config) == [
        "controlPlane.nodes[1].vcpu: 1 is below the minimum 2 for a controlPlane node",
        "controlPlane.nodes[1].memoryMib: 1024 is below the minimum 1700 for a controlPlane node",
    ]


def test_worker_pool_size_applies_to_its_nodes() -> None:
    config = prod()
    config["workerPools"][0]["memoryMib"] = 512
    found = problems(config)
    assert len(found) == 6 and all("memoryMib: 512 is below the minimum 1024" in p for p in found)


@pytest.mark.parametrize("uri", ["qemu:/system", "http://hv1/system", "qemu+ssh://root@hv1", "qemu+foo://x/system"])
def test_malformed_libvirt_uri(uri: str) -> None:
    config = prod()
    config["hypervisors"][1]["uri"] = uri
    assert one_problem(config).startswith("hypervisors[1].uri: ")


def test_malformed_mirror_url() -> None:
    config = prod()
    config["mirrors"]["osPackages"] = "ftp.example.com/debian"
    assert one_problem(config).startswith("mirrors.osPackages: ")


def test_harbor_rules() -> None:
    config = prod()
    del config["mirrors"]["harborInstallerSha256"]
    config["versions"] = {"harbor": "2.9.1"}
    config["harbor"].update(certificate="-----BEGIN CERTIFICATE-----")
    assert sorted(problems(config, frozenset({"harborTlsKey"}))) == [
        "harbor.hostname: a user-supplied certificate needs the hostname it was issued for",
        "harborTlsKey: harbor.certificate is set but its private key is missing",
        "mirrors.harborInstallerSha256: Harbor is enabled: give the sha256 of the offline installer"
        " (sha256sum harbor-offline-installer-v<version>.tgz)",
        "versions.harbor: Harbor 2.9.1 is not supported (2.10 or later)",
    ]


def test_unknown_keys_are_errors_at_every_depth() -> None:
    config = prod()
    config["etcd"]["backup"]["retian"] = 3
    config["loadBalancer"]["nodes"][0]["cpus"] = 2
    config["colour"] = "blue"
    found = sorted(problems(config))
    assert found[1:] == [
        "etcd.backup.retian: unknown key 'retian': did you mean 'retain'?",
        "loadBalancer.nodes[0].cpus: unknown key 'cpus': did you mean 'vcpu'?",
    ]
    # nothing close: the keys this level knows instead
    assert found[0].startswith("colour: unknown key 'colour' (known keys here: artifacts, cluster, controlPlane,")


def test_every_problem_is_reported_at_once() -> None:
    config = prod()
    config["etcd"]["nodes"].pop()  # 4 members
    config["etcd"]["nodes"][3]["ip"] = "10.20.0.11"
    config["controlPlane"]["nodes"][2].update(name="CP3", ip="10.30.0.33", hypervisor="hv9")
    config["etcd"]["backup"]["retian"] = 96
    found = problems(config)
    assert len(found) == 6, found
    assert {p.split(":")[0] for p in found} == {
        "etcd.nodes", "etcd.nodes[3].ip", "controlPlane.nodes[2].name", "controlPlane.nodes[2].ip",
        "controlPlane.nodes[2].hypervisor", "etcd.backup.retian",
    }


def test_type_errors_are_reported_with_paths() -> None:
    config = prod()
    config["etcd"]["nodes"][0]["ip"] = "not-an-ip"
    config["network"]["vip"] = 12
    found = problems(config)
    assert any(p.startswith("etcd.nodes[0].ip: ") for p in found)
    assert any(p.startswith("network.vip: ") for p in found)


def test_missing_required_sections() -> None:
    assert sorted(problems({"cluster": {"name": "x"}})) == [
        "controlPlane: is required", "etcd: is required", "loadBalancer: is required", "network: is required",
    ]


def test_load_balancer_needs_exactly_two() -> None:
    config = prod()
    config["loadBalancer"]["nodes"].append({"name": "lb3", "ip": "10.20.0.13"})
    assert "needs exactly 2 load-balancer nodes" in one_problem(config)


def test_control_plane_needs_two() -> None:
    config = prod()
    config["controlPlane"]["nodes"] = config["controlPlane"]["nodes"][:1]
    assert one_problem(config).startswith("controlPlane.nodes: needs at least 2")


def test_private_key_must_be_secret() -> None:
    config = prod()
    config["sshPrivateKey"] = "-----BEGIN OPENSSH PRIVATE KEY-----"
    assert one_problem(config) == (
        "sshPrivateKey: must be a secret: set it with `pulumi config set --secret sshPrivateKey`"
    )
    parse_stack(config, frozenset({"sshPrivateKey"}))


def test_secure_values_in_stack_file_are_opaque(tmp_path: Path) -> None:
    document = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    document["config"]["k8s-ha:sshPrivateKey"] = {"secure": "v1:abcdef"}
    document["config"]["libvirt:uri"] = "qemu:///system"  # other namespaces are not ours
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text(yaml.safe_dump(document))
    raw = read_stack_file(path)
    assert raw.secret_keys == frozenset({"sshPrivateKey"})
    assert raw.config["sshPrivateKey"] == "<secret>" and "uri" not in raw.config
    parse_stack(raw.config, raw.secret_keys)


def test_vrrp_rules() -> None:
    config = prod()
    config["loadBalancer"].update(vrrpVersion=2, advertIntervalMs=500)
    assert one_problem(config).startswith("loadBalancer.advertIntervalMs: VRRPv2 adverts are whole seconds")
    config["loadBalancer"].update(vrrpVersion=3, advertIntervalMs=505)
    assert "centiseconds" in one_problem(config)


def test_virtual_router_id_derives_from_cluster_name() -> None:
    a, b = prod(), prod()
    b["cluster"]["name"] = "prod-2"
    ids = {parse_stack(a).virtual_router_id, parse_stack(b).virtual_router_id}
    assert len(ids) == 2 and all(1 <= i <= 255 for i in ids)
    a["loadBalancer"]["virtualRouterId"] = 77
    assert parse_stack(a).virtual_router_id == 77


def test_tarball_etcd_needs_url_and_checksum() -> None:
    config = prod()
    config["etcd"]["source"] = {"kind": "tarball"}
    assert sorted(problems(config)) == [
        "etcd.source.sha256: a tarball source needs a url and its sha256 checksum",
        "etcd.source.url: a tarball source needs a url and its sha256 checksum",
    ]
    config["etcd"]["source"] = {"kind": "tarball", "url": "https://mirror/etcd.tgz", "sha256": "ABC"}
    assert one_problem(config) == "etcd.source.sha256: must be 64 lowercase hex digits"


def test_existing_host_cannot_be_pinned_and_needs_a_host_key() -> None:
    config = prod()
    config["workerPools"] = [{"name": "metal", "nodes": [
        {"name": "m1", "ip": "10.20.0.51", "hypervisor": "hv1", "existing": {"hostKey": "ssh-ed25519 AAAA"}},
        {"name": "m2", "ip": "10.20.0.52", "existing": {"hostKey": "not a key"}},
    ]}]
    assert sorted(problems(config)) == [
        "workerPools[0].nodes[0].hypervisor: an existing host is not placed on a hypervisor: drop 'hypervisor'",
        "workerPools[0].nodes[1].existing.hostKey: 'not a key'... is not an SSH public key"
        " such as 'ssh-ed25519 AAAA...'",
    ]


def test_vm_nodes_need_a_hypervisor() -> None:
    config = prod()
    config["hypervisors"] = []
    config["harbor"]["enabled"] = False
    assert "no hypervisor is defined" in one_problem(config)


def test_worker_pool_count_or_nodes() -> None:
    config = prod()
    config["workerPools"][0].pop("firstIp")
    assert one_problem(config) == "workerPools[0].firstIp: 'count' needs 'firstIp', the address of the first node"
    config["workerPools"][0].update(firstIp="10.20.0.101", nodes=[])
    assert one_problem(config) == "workerPools[0]: set either 'count' (with 'firstIp') or 'nodes'"


def test_pki_ordering() -> None:
    config = prod()
    config["pki"] = {"caValidityHours": 100, "certValidityHours": 200}
    assert "certValidityHours: cannot exceed caValidityHours" in problems(config)[0]


def test_pod_cidr_must_hold_a_range_per_node() -> None:
    config = prod()
    config["kubernetes"] = {"podCidr": "10.244.0.0/22"}
    assert one_problem(config) == (
        "kubernetes.podCidr: 10.244.0.0/22 holds 4 node ranges of /24, but the stack has 9 Kubernetes nodes"
    )


def test_worker_labels_follow_kubernetes_syntax() -> None:
    config = prod()
    config["workerPools"][0]["labels"] = {"example.com/tier": "gold", "bad key": "x", "zone": "-nope"}
    assert one_problem(config) == (
        "workerPools[0].labels: not valid Kubernetes labels: key 'bad key', value '-nope' of 'zone'"
    )


def test_etcd_backup_values_cannot_break_unit_files() -> None:
    config = prod()
    config["etcd"]["backup"] = {"onCalendar": "hourly\nExecStart=/bin/sh", "directory": "/var/../etc"}
    assert sorted(problems(config)) == [
        "etcd.backup.directory: '/var/../etc' must be an absolute path of letters, digits and ._-/ without '..'",
        "etcd.backup.onCalendar: 'hourly\\nExecStart=/bin/sh' is not a systemd calendar expression"
        " such as 'hourly' or '*:0/30'",
    ]


def test_no_check_hides_inside_an_optional_annotation() -> None:
    """The field checks read a field's own metadata; a Check nested in `X | None` would never run."""
    import typing

    from pydantic import BaseModel

    from k8s_ha.model import spec as spec_module

    def nested_checks(annotation: object) -> bool:
        if typing.get_origin(annotation) is typing.Annotated:
            return any(isinstance(m, spec_module.Check) for m in annotation.__metadata__)  # type: ignore[attr-defined]
        return any(nested_checks(arg) for arg in typing.get_args(annotation))

    models = [m for m in vars(spec_module).values() if isinstance(m, type) and issubclass(m, BaseModel)]
    for model in models:
        for name, info in model.model_fields.items():
            if info.annotation is not None and typing.get_origin(info.annotation) is not typing.Annotated:
                assert not nested_checks(info.annotation), f"{model.__name__}.{name}"


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("hypervisors", "baseImage", "relative/path.qcow2"), ("etcd.source", "url", "ftp://mirror/etcd.tgz"),
     ("mirrors", "osSecurityPackages", "mirror.example/debian-security")],
)
def test_optional_urls_and_paths_are_checked(section: str, key: str, value: str) -> None:
    config = prod()
    if section == "hypervisors":
        config["hypervisors"][0][key] = value
        expected = "hypervisors[0].baseImage: "
    elif section == "etcd.source":
        config["etcd"]["source"] = {"kind": "tarball", "url": value, "sha256": "a" * 64}
        expected = "etcd.source.url: "
    else:
        config["mirrors"][key] = value
        expected = f"mirrors.{key}: "
    assert one_problem(config).startswith(expected)


@pytest.mark.parametrize("seconds", [30, 7201])
def test_ssh_boot_timeout_is_bounded(seconds: int) -> None:
    config = prod()
    config["ssh"] = {**config.get("ssh", {}), "bootTimeoutS": seconds}
    assert one_problem(config).startswith("ssh.bootTimeoutS: ")


def test_an_etcd_restore_names_its_snapshot_by_url_and_checksum() -> None:
    config = prod()
    config["etcd"]["restore"] = {"url": "https://backups.example.com/etcd.db", "sha256": "a" * 64}
    assert parse_stack(config).etcd.restore is not None
    config["etcd"]["restore"] = {"url": "backups/etcd.db", "sha256": "not-a-checksum"}
    found = problems(config)
    assert any(p.startswith("etcd.restore.url:") for p in found), found
    assert any(p.startswith("etcd.restore.sha256:") for p in found), found
    config["etcd"]["restore"] = {"url": "https://backups.example.com/etcd.db"}
    assert any(p.startswith("etcd.restore.sha256:") for p in problems(config))
