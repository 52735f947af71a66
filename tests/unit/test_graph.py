"""The resource graph the real program registers (under mocks): machines, access, layers, secrets."""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pulumi
import pytest

from k8s_ha.model.stackfile import read_stack_file
from k8s_ha.placement.plan import load_plan
from k8s_ha.placement.report import plan_data
from k8s_ha.resources.remote import DIAL_ERROR_LIMIT, EXISTING_HOST_DIALS, dials_for
from tests.unit.harness import Graph, Registered, run_program

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "command:remote:Command"
DOMAIN = "libvirt:index/domain:Domain"


def config_of(stack: str) -> dict[str, Any]:
    return copy.deepcopy(read_stack_file(ROOT / stack).config)


@cache
def deployed(stack: str) -> Graph:
    return run_program(config_of(stack))


def steps(graph: Graph, suffix: str) -> list[Registered]:
    return [r for r in graph.of_type(COMMAND) if r.name.endswith(suffix)]


def provider_name(urn: str) -> str:
    return urn.split("::")[-2]


@pytest.mark.parametrize("stack", ["Pulumi.dev.yaml", "Pulumi.prod.yaml", "Pulumi.staging.yaml"])
def test_every_domain_uses_its_hypervisors_provider(stack: str) -> None:
    from k8s_ha.placement.plan import load_plan

    placement = load_plan(ROOT / stack).placement
    graph = deployed(stack)
    domains = {d.name.removesuffix("-domain"): d for d in graph.of_type(DOMAIN)}
    vms = [n for n in placement.nodes if n.is_vm]
    assert set(domains) == {n.name for n in vms}
    for node in vms:
        assert provider_name(domains[node.name].provider) == f"hv-{node.hypervisor}"
    providers = graph.of_type("pulumi:providers:libvirt")
    assert sorted(p.name for p in providers) == sorted({f"hv-{n.hypervisor}" for n in vms})
    assert {p.inputs["uri"] for p in providers} <= {hv["uri"] for hv in config_of(stack)["hypervisors"]}


def test_prod_resource_counts() -> None:
    graph = deployed("Pulumi.prod.yaml")
    counts = Counter(r.type for r in graph.resources.values())
    assert counts[DOMAIN] == 17
    assert counts["libvirt:index/cloudInitDisk:CloudInitDisk"] == 17
    assert counts["libvirt:index/volume:Volume"] == 3 + 17 + 1  # base per hypervisor, roots, Harbor data
    assert counts["pulumi:providers:libvirt"] == 3
    assert len(steps(graph, "-ready")) == 17
    assert len(steps(graph, "-loadbalancer")) == 2
    assert len(steps(graph, "-etcd-member")) == 5 and len(steps(graph, "etcd-health")) == 1


def test_root_volumes_clone_the_base_image_and_grow() -> None:
    graph = deployed("Pulumi.prod.yaml")
    root = graph.named("cp1-root")
    assert root.inputs["size"] == 50 * 1024**3
    base_urns = {r.urn for r in graph.of_type("libvirt:index/volume:Volume") if r.name.endswith("-base-image")}
    assert any(urn in root.dependencies for urn in base_urns)


def test_domain_settings_follow_the_plan() -> None:
    graph = deployed("Pulumi.prod.yaml")
    domain = graph.named("etcd1-domain")
    assert domain.inputs["type"] == "kvm" and domain.inputs["autostart"] is True
    assert domain.inputs["vcpu"] == 4 and domain.inputs["memory"] == 8192
    nic = domain.inputs["networkInterfaces"][0]
    assert nic["bridge"] == "br0" and nic["mac"].startswith("52:54:00:")


def test_every_remote_step_waits_for_its_hosts_readiness_and_readiness_for_the_domain() -> None:
    graph = deployed("Pulumi.prod.yaml")
    for step in graph.of_type(COMMAND):
        if step.name.endswith("-ready"):
            node = step.name.removesuffix("-ready")
            assert graph.depends_on(step, graph.named(f"{node}-domain")), step.name
        elif step.name != "etcd-health":
            node = step.name.split("-")[0] if not step.name.startswith("general-") else "-".join(
                step.name.split("-")[:2])
            assert graph.depends_on(step, graph.named(f"{node}-ready")), step.name


def test_existing_hosts_create_no_libvirt_resources() -> None:
    graph = deployed("Pulumi.staging.yaml")
    names = {r.name for r in graph.resources.values() if r.type.startswith("libvirt:")}
    assert not any(n.startswith("metal") for n in names)
    for metal in ("metal1", "metal2", "metal3"):
        ready = graph.named(f"{metal}-ready")
        assert not any(a.type.startswith("libvirt:") for a in graph.ancestors(ready))
        assert graph.named(metal).type == "k8s-ha:machines:ExistingHost"


def test_connections_pin_host_keys_and_keep_the_private_key_secret() -> None:
    graph = deployed("Pulumi.staging.yaml")
    metal_hosts = {graph.named(f"metal{i}-ready").inputs["connection"]["host"] for i in (1, 2, 3)}
    for step in graph.of_type(COMMAND):
        assert "connection" in step.secret_inputs and "stdin" in step.secret_inputs
        assert step.inputs["connection"]["hostKey"]
        assert {"stdout", "stderr"} <= step.additional_secret_outputs
        # A VM's first step is dialled through its boot (ssh.bootTimeoutS), its later steps find it
        # up; an existing host is up already, so one off the network is reported within a minute.
        existing = step.inputs["connection"]["host"] in metal_hosts
        first = step.name.endswith("-ready")
        expected = EXISTING_HOST_DIALS if existing else dials_for(900) if first else DIAL_ERROR_LIMIT
        assert step.inputs["connection"]["dialErrorLimit"] == expected, step.name
    ready = graph.named("metal1-ready")
    pinned = config_of("Pulumi.staging.yaml")["workerPools"][0]["nodes"][0]["existing"]["hostKey"]
    assert ready.inputs["connection"]["hostKey"] == pinned


def test_command_text_shows_a_hash_but_no_secret() -> None:
    graph = deployed("Pulumi.prod.yaml")
    for step in graph.of_type(COMMAND):
        assert "sha256:" in step.inputs["create"]
        assert "create" not in step.secret_inputs and "update" not in step.secret_inputs
        assert "BEGIN" not in step.inputs["create"]


def test_cloud_init_user_data_is_secret() -> None:
    graph = deployed("Pulumi.prod.yaml")
    for disk in graph.of_type("libvirt:index/cloudInitDisk:CloudInitDisk"):
        assert "userData" in disk.secret_inputs
        assert "networkConfig" not in disk.secret_inputs


def test_private_keys_tokens_and_passwords_are_secret_in_every_output() -> None:
    graph = deployed("Pulumi.prod.yaml")
    assert {"automationPrivateKey", "etcdClient", "connections"} <= graph.secret_outputs
    assert "vip" not in graph.secret_outputs and "faultTolerance" not in graph.secret_outputs


def test_fault_tolerance_is_exported() -> None:
    outputs = deployed("Pulumi.dev.yaml").stack_outputs
    assert outputs["vip"] == "192.168.122.10"
    assert outputs["faultTolerance"]["highlyAvailable"] is False
    assert outputs["faultTolerance"]["warnings"][0].startswith("NOT HIGHLY AVAILABLE")


def test_load_balancer_config_follows_control_plane_membership() -> None:
    """Adding a master changes both LB bundles (in-place update), and nothing about the LB VMs."""
    before = deployed("Pulumi.prod.yaml")
    config = config_of("Pulumi.prod.yaml")
    config["controlPlane"]["nodes"].append({"name": "cp4", "ip": "10.20.0.34"})
    after = run_program(config)
    for lb in ("lb1", "lb2"):
        assert before.named(f"{lb}-loadbalancer").inputs["create"] != after.named(f"{lb}-loadbalancer").inputs["create"]
        assert before.named(f"{lb}-domain").inputs == after.named(f"{lb}-domain").inputs
        assert before.named(f"{lb}-ready").inputs["create"] == after.named(f"{lb}-ready").inputs["create"]


def test_etcd_order_certificates_then_members_then_health() -> None:
    graph = deployed("Pulumi.prod.yaml")
    health = graph.named("etcd-health")
    for member in steps(graph, "-etcd-member"):
        assert graph.depends_on(health, member)
        node = member.name.removesuffix("-etcd-member")
        assert graph.depends_on(member, graph.named(f"etcd-{node}-server-cert"))
        assert graph.depends_on(member, graph.named(f"etcd-{node}-peer-cert"))


def test_dependency_depth_is_constant_per_layer() -> None:
    """No chain through all nodes, but the rolling upgrade's, which is one node at a time by
    design and holds nothing else up: 3 workers and 60 workers give the same critical path."""
    small = config_of("Pulumi.prod.yaml")
    big = copy.deepcopy(small)
    big["workerPools"][0]["count"] = 60
    big["network"]["cidr"] = "10.20.0.0/23"
    depth = {}
    for label, config in (("small", small), ("big", big)):
        graph = run_program(config)
        depth[label] = max(graph.depth(step) for step in graph.of_type(COMMAND) if "-k8s-upgrade" not in step.name)
    assert depth["small"] == depth["big"]


def upgrade_chain(graph: Graph) -> list[str]:
    """The upgrade steps in the order their dependencies force (each waits for the one before)."""
    steps = [r for r in graph.of_type(COMMAND) if "-k8s-upgrade" in r.name]
    return [r.name for r in sorted(steps, key=graph.depth)]


def test_the_upgrade_chain_goes_one_node_at_a_time_in_kubeadms_order() -> None:
    """Masters first (the first runs `kubeadm upgrade apply`), then each worker between its drain and
    its uncordon, across pools; each step waits for the one before it, and init for the first
    master's (its configuration names the version), while joins wait for no other."""
    graph = deployed("Pulumi.prod.yaml")
    chain = upgrade_chain(graph)
    masters = [f"cp{i}-k8s-upgrade" for i in (1, 2, 3)]
    workers = [n.removesuffix("-k8s-join") for n in sorted(r.name for r in graph.of_type(COMMAND))
               if n.endswith("-k8s-join") and not n.startswith("cp")]
    assert chain == masters + [f"{w}-k8s-upgrade{p}" for w in workers for p in ("-drain", "", "-uncordon")]
    plan = load_plan(ROOT / "Pulumi.prod.yaml")  # what `plan` tells the user the order is
    assert [f"{n}-k8s-upgrade" for n in plan_data(plan.spec, plan.placement)["upgradeOrder"]] == [
        n for n in chain if n.endswith("-k8s-upgrade")]
    for before, after in itertools.pairwise(chain):
        assert graph.depends_on(graph.named(after), graph.named(before)), (after, before)
    assert graph.depends_on(graph.named("cp1-k8s-init"), graph.named("cp1-k8s-upgrade"))
    for join in (r for r in graph.of_type(COMMAND) if r.name.endswith("-k8s-join")):  # only through init
        assert {a.name for a in graph.ancestors(join) if "-k8s-upgrade" in a.name} == {"cp1-k8s-upgrade"}, join.name
    for worker in workers:  # a worker's drain waits for it to be a member (a new worker is left alone)
        assert graph.depends_on(graph.named(f"{worker}-k8s-upgrade-drain"), graph.named(f"{worker}-k8s-membership"))
    assert graph.depends_on(graph.named("patch-deployment-kube-system-coredns"), graph.named("cp3-k8s-upgrade"))


def test_an_etcd_restore_restores_every_member_then_restarts_each_control_plane_in_turn() -> None:
    """etcd.restore: every member's restore after the health gate (all at once: the members form
    the restored cluster together), the gate again after all of them, then each master's control
    plane restarted against it, one master at a time. Without the setting, none of these exist."""
    config = config_of("Pulumi.prod.yaml")
    plain = run_program(config)
    assert not [r for r in plain.of_type(COMMAND) if "restore" in r.name or "restart" in r.name]
    config["etcd"]["restore"] = RESTORE
    graph = run_program(config)
    members = [r.name.removesuffix("-etcd-member") for r in graph.of_type(COMMAND) if r.name.endswith("-etcd-member")]
    restored = graph.named("etcd-restored")
    for member in members:
        restore = graph.named(f"{member}-etcd-restore")
        assert graph.depends_on(restore, graph.named("etcd-health"))
        assert graph.depends_on(restored, restore)
        assert RESTORE["sha256"] in restore.inputs["stdin"] and RESTORE["url"] in restore.inputs["stdin"]
    restarts = [graph.named(f"cp{i}-k8s-restart-control-plane") for i in (1, 2, 3)]
    assert all(graph.depends_on(r, restored) for r in restarts)
    assert graph.depends_on(restarts[1], restarts[0]) and graph.depends_on(restarts[2], restarts[1])
    assert graph.depends_on(restarts[0], graph.named("cp1-k8s-init"))
    # The other masters' restarts come before their joins: one that joins later starts on the
    # restored etcd and is not restarted for nothing.
    assert graph.depends_on(graph.named("cp2-k8s-join"), restarts[1])
    assert not graph.depends_on(restarts[1], graph.named("cp2-k8s-join"))


def test_invalid_stack_fails_before_any_resource() -> None:
    config = config_of("Pulumi.prod.yaml")
    config["etcd"]["nodes"] = config["etcd"]["nodes"][:4]
    config["network"]["vip"] = "10.20.0.31"
    with pytest.raises(pulumi.RunError) as info:
        run_program(config)
    message = str(info.value)
    assert "etcd.nodes: 4 members" in message
    assert "controlPlane.nodes[0].ip: 10.20.0.31 is already used by network.vip" in message


def test_private_key_config_must_be_secret_in_the_program() -> None:
    config = config_of("Pulumi.prod.yaml")
    config["sshPrivateKey"] = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----"
    with pytest.raises(pulumi.RunError, match="sshPrivateKey: must be a secret"):
        run_program(config)
    graph = run_program(config, ("sshPrivateKey",))
    assert "automationPublicKey" not in graph.stack_outputs  # the user's own key is used, none generated
    assert not [r for r in graph.resources.values() if r.name == "automation-ssh-key"]


def test_kubernetes_order_etcd_health_first_master_then_joins() -> None:
    graph = deployed("Pulumi.prod.yaml")
    init = graph.named("cp1-k8s-init")
    assert graph.depends_on(init, graph.named("etcd-health"))
    assert graph.depends_on(init, graph.named("lb1-loadbalancer")) and graph.depends_on(
        init, graph.named("lb2-loadbalancer"))
    for master in ("cp2", "cp3"):
        join = graph.named(f"{master}-k8s-join")
        assert graph.depends_on(join, init) and graph.depends_on(join, graph.named(f"{master}-k8s-node"))
    assert not graph.depends_on(graph.named("cp3-k8s-join"), graph.named("cp2-k8s-join"))  # parallel
    for i in range(1, 7):
        join = graph.named(f"general-{i}-k8s-join")
        assert graph.depends_on(join, init)
        assert not graph.depends_on(join, graph.named("cp2-k8s-join"))  # workers do not wait for masters
        membership = graph.named(f"general-{i}-k8s-membership")
        assert graph.depends_on(membership, join)
        assert graph.depends_on(membership, graph.named("objects"))  # Nodes are Ready only with the CNI


def test_joins_carry_their_delete_actions() -> None:
    graph = deployed("Pulumi.prod.yaml")
    assert "# ---- k8s-reset.sh ----" in graph.named("cp2-k8s-join").inputs["stdin"]
    assert "# ---- k8s-reset.sh ----" in graph.named("general-1-k8s-join").inputs["stdin"]
    drain = graph.named("general-1-k8s-membership")
    assert "# ---- k8s-drain.sh ----" in drain.inputs["stdin"]
    assert drain.inputs["connection"]["host"] == "10.20.0.31"  # runs on the first master
    assert "# ---- etcd-remove.sh ----" in graph.named("etcd2-etcd-member").inputs["stdin"]
    for step in graph.of_type(COMMAND):
        assert "K8SHA_ACTION=delete" in step.inputs["delete"]


def test_kubeconfig_is_a_secret_export_pointing_at_the_vip() -> None:
    graph = deployed("Pulumi.prod.yaml")
    assert "kubeconfig" in graph.secret_outputs
    import yaml

    kubeconfig = yaml.safe_load(graph.stack_outputs["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://10.20.0.10:6443"
    assert kubeconfig["users"][0]["user"]["client-key-data"]


def test_kubernetes_bootstrap_false_builds_everything_but_the_kubernetes_layer() -> None:
    """A staged rollout: the same machines, front door, etcd and Harbor; no kubeadm step, no add-on and
    no kubernetes provider (whose kubeconfig would depend on a master that never initialises)."""
    config = config_of("Pulumi.prod.yaml")
    config["kubernetes"] = {**config.get("kubernetes", {}), "bootstrap": False}
    staged, full = run_program(config), deployed("Pulumi.prod.yaml")
    kubernetes_types = ("kubernetes:", "pulumi:providers:kubernetes", "k8s-ha:kubernetes:")
    assert not [r for r in staged.resources.values() if r.type.startswith(kubernetes_types)]
    assert not [s.name for s in staged.of_type(COMMAND) if "-k8s-" in s.name]
    kept = {(r.type, r.name) for r in full.resources.values()
            if not r.type.startswith(kubernetes_types)
            and "-k8s-" not in r.name}
    assert kept <= {(r.type, r.name) for r in staged.resources.values()}
    assert len(staged.of_type(DOMAIN)) == len(full.of_type(DOMAIN))
    assert "kubeconfig" not in staged.stack_outputs and "vip" in staged.stack_outputs
    from k8s_ha.placement.plan import plan_stack

    assert any("kubernetes.bootstrap is false" in w for w in plan_stack(config).warnings)


RESTORE = {"url": "https://backups.example.com/etcd-20261207.db", "sha256": "ab" * 32}


@pytest.mark.parametrize("config_change", [{}, {"kubernetes": {"bootstrap": False}},
                                           {"etcd": {"restore": RESTORE}}], ids=["full", "staged", "restore"])
@pytest.mark.parametrize("stack", ["Pulumi.dev.yaml", "Pulumi.prod.yaml", "Pulumi.staging.yaml"])
def test_program_runs_exactly_the_steps_the_render_cli_writes(stack: str, config_change: dict[str, Any]) -> None:
    """`python -m k8s_ha render` and `pulumi up` must agree on what every host runs."""
    import re

    from k8s_ha.placement.plan import load_plan, plan_stack
    from k8s_ha.render.material import Placeholders
    from k8s_ha.render.tree import host_steps

    config = copy.deepcopy(config_of(stack))
    for key, change in config_change.items():
        config[key] = {**config.get(key, {}), **change}
    plan = load_plan(ROOT / stack) if not config_change else plan_stack(config)
    spec, placement = plan.spec, plan.placement
    rendered = {(step.host, step.name) for node in placement.nodes
                for step in host_steps(spec, placement, node, Placeholders())}
    header = re.compile(r'^# k8s-ha step "([^"]+)" for host (\S+):', re.M)
    program = set()
    for command in (deployed(stack) if not config_change else run_program(config)).of_type(COMMAND):
        match = header.search(command.inputs["stdin"])
        assert match, command.name
        program.add((match[2], match[1]))
    assert program == rendered


def test_addons_wait_for_the_control_plane_and_use_the_kubeconfig() -> None:
    graph = deployed("Pulumi.prod.yaml")
    provider = graph.named("cluster")
    assert provider.type == "pulumi:providers:kubernetes"
    assert "kubeconfig" in provider.secret_inputs
    assert graph.depends_on(provider, graph.named("cp1-k8s-init"))
    objects = graph.named("objects")
    assert provider_name(objects.provider) == "cluster"
    calico = [graph.named(f"manifest-{i}") for i in range(2)]  # prod uses Calico: operator manifests first
    assert graph.depends_on(calico[1], calico[0]) and graph.depends_on(objects, calico[1])
    patch = graph.named("patch-deployment-kube-system-coredns")
    assert graph.depends_on(patch, objects)
    assert patch.inputs["spec"]["replicas"] == 2


def test_flannel_stack_applies_no_remote_manifest() -> None:
    graph = deployed("Pulumi.staging.yaml")
    assert not [r for r in graph.resources.values() if r.name.startswith("manifest-")]
    kinds = {o["kind"] for o in graph.named("objects").inputs["objs"]}
    assert {"DaemonSet", "PodDisruptionBudget"} <= kinds


def test_every_kubernetes_node_trusts_harbor_and_the_control_plane_waits_for_it() -> None:
    graph = deployed("Pulumi.prod.yaml")
    harbor_cert = graph.named("harbor-server-cert")
    prepared = steps(graph, "-k8s-node")
    assert len(prepared) == 9
    for step in prepared:  # containerd's certs.d trust is rendered from Harbor's certificate
        assert graph.depends_on(step, harbor_cert), step.name
    assert graph.depends_on(graph.named("cp1-k8s-init"), graph.named("harbor-harbor"))
    assert {"harborAdminPassword", "harborRobotSecret"} <= graph.secret_outputs


def test_a_dial_budget_lasts_at_least_its_seconds_under_the_providers_backoff() -> None:
    """pulumi-command waits 0.1 s after the first failed dial, 1.5x longer after each, at most 5 s."""
    def waits(dials: int) -> float:
        return sum(min(0.1 * 1.5**i, 5.0) for i in range(dials))

    for seconds in (60, 900, 7200):
        dials = dials_for(seconds)
        assert waits(dials) >= seconds > waits(dials - 1)
    assert 185 <= dials_for(900) <= 190  # ~10 s of ramp, then one dial every 5 s
