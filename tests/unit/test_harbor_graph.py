"""The resource graph of HarborRegistry under the recording mock monitor: order, trust, secrets,
and the proxy-cache projects the nodes' containerd mirrors expect.

HaCluster builds Harbor (tests/unit/test_graph.py covers it in the whole program); here
`run_harbor` builds only what Harbor needs, the way the program does: ClusterPki, the Harbor host
(a LibvirtVm, or an ExistingHost), then HarborRegistry, through tests.unit.harness.RecordingMonitor,
so each case can vary the Harbor host alone.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
import shlex
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pulumi
import pytest

from k8s_ha.model.artifacts import HARBOR_PROXY_PROJECTS
from k8s_ha.model.spec import Role, StackSpec, parse_stack
from k8s_ha.model.stackfile import read_stack_file
from k8s_ha.placement.place import Placement, place
from k8s_ha.render import material as m
from k8s_ha.render.harbor import HARBOR_UPSTREAMS, harbor_config, robot_projects
from k8s_ha.render.kubernetes import CERTS_DIR, kubernetes_config, registry_host_files
from k8s_ha.resources.harbor import HarborRegistry, HarborRegistryArgs
from k8s_ha.resources.pki import ClusterPki
from k8s_ha.resources.remote import MaterialViews
from k8s_ha.resources.vm import ExistingHost, Host, Hypervisors, LibvirtVm
from tests.unit.harness import Graph, Mocks, RecordingMonitor, Registered, record_exports

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "command:remote:Command"
PROVIDER = "pulumi:providers:harbor"
REGISTRY = "harbor:index/registry:Registry"
PROJECT = "harbor:index/project:Project"
ROBOT = "harbor:index/robotAccount:RobotAccount"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHarborExistingHostKeyForTheGraphTests000000 harbor"
USER_CERT = "-----BEGIN CERTIFICATE-----\nVXNlciBjZXJ0aWZpY2F0ZQ==\n-----END CERTIFICATE-----\n"
USER_KEY = "-----BEGIN PRIVATE KEY-----\nVXNlciBrZXk=\n-----END PRIVATE KEY-----\n"


def _mock_id(name: str) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest()[:6], 16)


class HarborMocks(Mocks):
    """The harness's fake provider outputs, plus the computed outputs of the Harbor resources."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        resource_id, outputs = super().new_resource(args)
        if args.typ == REGISTRY:
            outputs.update(registryId=_mock_id(args.name), status="healthy")
        elif args.typ == PROJECT:
            outputs["projectId"] = _mock_id(args.name)
        elif args.typ == ROBOT:
            outputs.update(fullName=f"robot${args.inputs['name']}", robotId=str(_mock_id(args.name)))
        return resource_id, outputs


class _Root(pulumi.ComponentResource):
    def __init__(self) -> None:
        super().__init__("k8s-ha:test:HarborGraph", "test")


@dataclass
class HarborRun:
    spec: StackSpec
    placement: Placement
    graph: Graph
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)


def run_harbor(config: dict[str, Any], secret_keys: tuple[str, ...] = ()) -> HarborRun:
    """Register ClusterPki, the Harbor host and HarborRegistry under the recording monitor."""
    spec = parse_stack(config, frozenset(secret_keys))
    placement = place(spec)
    run = HarborRun(spec, placement, Graph())
    mocks = HarborMocks()
    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="k8s-ha", stack="test", preview=False,
                             monitor=RecordingMonitor(mocks, run.graph))
    exports: dict[str, pulumi.Output[Any]] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> pulumi.Output[Any]:
        root = _Root()
        child = pulumi.ResourceOptions(parent=root)
        pki = ClusterPki("pki", spec, placement, child)
        material = MaterialViews(pki.material)
        private_key = pulumi.Output.secret("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END ...-----\n")
        (node,) = placement.by_role(Role.HARBOR)
        host: Host
        if node.existing is None:
            assert node.hypervisor is not None
            hypervisors = Hypervisors(spec, {node.hypervisor}, root)
            host = LibvirtVm(node, spec, hypervisors, material, private_key, None, child)
        else:
            host = ExistingHost(node, spec, material, private_key, child)
        registry = HarborRegistry("harbor", HarborRegistryArgs(
            host=host.target,
            config=harbor_config(spec, placement),
            tls_cert=pki.material[m.HARBOR_CERT],
            tls_key=pki.material[m.HARBOR_KEY],
            admin_password=pki.material[m.HARBOR_ADMIN_PASSWORD],
            db_password=pki.material[m.HARBOR_DB_PASSWORD],
        ), child)
        exports.update({key: pulumi.Output.from_input(value) for key, value in registry.exports().items()})
        return pulumi.Output.all(*exports.values())

    program()
    record_exports(exports, run.outputs, run.secret_outputs)
    return run


def prod_config() -> dict[str, Any]:
    return copy.deepcopy(read_stack_file(ROOT / "Pulumi.prod.yaml").config)


@cache
def prod() -> HarborRun:
    return run_harbor(prod_config())


def harbor_resources(graph: Graph) -> list[Registered]:
    return [r for r in graph.resources.values() if r.type.startswith("harbor:")]


def random_result(name: str, length: int) -> str:
    """What the harness's mocks return for random:RandomPassword `name`."""
    return hashlib.sha256(name.encode()).hexdigest()[:length]


# ---- order ---------------------------------------------------------------------------------------


def test_harbor_step_waits_for_its_hosts_readiness_and_its_certificate() -> None:
    graph = prod().graph
    step = graph.named("harbor-harbor")
    assert step.type == COMMAND
    assert graph.depends_on(step, graph.named("harbor-ready"))
    assert graph.depends_on(step, graph.named("harbor-domain"))  # through readiness
    assert graph.depends_on(step, graph.named("harbor-server-cert"))
    assert graph.depends_on(step, graph.named("harbor-server-key"))
    assert graph.depends_on(step, graph.named("harbor-admin-password"))
    assert step.inputs["connection"]["host"] == "10.20.0.40"
    assert "# ---- harbor-install.sh ----" in step.inputs["stdin"]
    assert "# ---- harbor-remove.sh ----" in step.inputs["stdin"]  # the delete travels with it
    assert "K8SHA_ACTION=delete" in step.inputs["delete"]


def test_the_provider_waits_for_harbor_and_every_harbor_resource_uses_it() -> None:
    graph = prod().graph
    (provider,) = graph.of_type(PROVIDER)
    assert graph.depends_on(provider, graph.named("harbor-harbor"))
    resources = harbor_resources(graph)
    assert {r.type for r in resources} == {REGISTRY, PROJECT, ROBOT}
    for resource in resources:
        assert resource.provider.startswith(provider.urn + "::"), resource.name
    robot = graph.named("harbor-robot")
    for project in graph.of_type(PROJECT):
        assert graph.depends_on(robot, project)  # permissions name projects that must exist


def test_the_provider_verifies_tls_against_the_name_the_nodes_use() -> None:
    run = prod()
    (provider,) = run.graph.of_type(PROVIDER)
    assert provider.inputs["url"] == "https://10.20.0.40" == run.outputs["harborUrl"]
    assert provider.inputs["username"] == "admin"
    # The provider's default is to skip verification: it must be sent, and be false.
    assert json.loads(provider.inputs["insecure"]) is False
    assert "password" in provider.secret_inputs


def test_a_hostname_names_harbor_everywhere() -> None:
    config = prod_config()
    config["harbor"]["hostname"] = "registry.prod.example.com"
    run = run_harbor(config)
    (provider,) = run.graph.of_type(PROVIDER)
    assert provider.inputs["url"] == "https://registry.prod.example.com"
    stdin = run.graph.named("harbor-harbor").inputs["stdin"]
    assert "export K8SHA_HARBOR_HOST=registry.prod.example.com\n" in stdin


# ---- proxy cache ---------------------------------------------------------------------------------


def test_proxy_cache_projects_point_at_their_own_registries() -> None:
    graph = prod().graph
    assert len(graph.of_type(PROJECT)) == len(graph.of_type(REGISTRY)) == len(HARBOR_PROXY_PROJECTS)
    for registry, (project, _upstream) in HARBOR_PROXY_PROJECTS.items():
        endpoint = graph.named(f"harbor-upstream-{project}")
        provider_name, url = HARBOR_UPSTREAMS[registry]
        assert endpoint.inputs["providerName"] == provider_name and endpoint.inputs["endpointUrl"] == url
        created = graph.named(f"harbor-project-{project}")
        assert created.inputs["name"] == project
        assert created.inputs["registryId"] == _mock_id(endpoint.name)  # its own endpoint's id
        assert endpoint.urn in created.dependencies
        assert created.inputs["public"] is True  # containerd pulls anonymously


def test_created_projects_are_exactly_the_ones_the_nodes_mirror_through() -> None:
    """Read the mirror URLs from the hosts.toml files the nodes get; the projects must match."""
    from tests.support.material import generate

    run = prod()
    files = registry_host_files(kubernetes_config(run.spec, run.placement), generate(run.spec, run.placement))
    mirrored = set()
    for file in files:
        if not file.path.endswith("hosts.toml") or file.path.startswith(f"{CERTS_DIR}/10.20.0.40/"):
            continue
        for url in tomllib.loads(file.content)["host"]:
            assert url.startswith("https://10.20.0.40/v2/"), url
            mirrored.add(url.removeprefix("https://10.20.0.40/v2/"))
    created = {r.inputs["name"] for r in run.graph.of_type(PROJECT)}
    assert mirrored and created == mirrored
    assert sorted(created) == sorted(run.outputs["harborProxyProjects"])


def test_without_proxy_cache_no_endpoint_and_no_project_is_made() -> None:
    config = prod_config()
    config["harbor"]["proxyCache"] = False
    run = run_harbor(config)
    assert not run.graph.of_type(REGISTRY) and not run.graph.of_type(PROJECT)
    robot = run.graph.named("harbor-robot")
    assert [p["namespace"] for p in robot.inputs["permissions"]] == ["library"]
    assert run.outputs["harborProxyProjects"] == []


def test_the_robot_account_may_only_pull() -> None:
    run = prod()
    robot = run.graph.named("harbor-robot")
    assert robot.inputs["level"] == "system" and robot.inputs["name"] == "prod-pull"
    permissions = robot.inputs["permissions"]
    assert [p["namespace"] for p in permissions] == robot_projects(harbor_config(run.spec, run.placement))
    for permission in permissions:
        assert permission["kind"] == "project"
        assert permission["accesses"] == [{"action": "pull", "resource": "repository"}]
    assert run.outputs["harborRobotName"] == "robot$prod-pull"


# ---- secrets -------------------------------------------------------------------------------------


def test_passwords_and_the_robot_secret_are_secret_in_every_input_and_output() -> None:
    run = prod()
    secrets = {
        "admin": random_result("harbor-admin-password", 24),
        "db": random_result("harbor-db-password", 24),
        "robot": random_result("harbor-robot-secret", 32),
    }
    seen: dict[str, list[str]] = {key: [] for key in secrets}
    for resource in run.graph.resources.values():
        for key, value in resource.inputs.items():
            text = json.dumps(value)
            if key == "stdin":  # files travel base64-encoded in the bundle
                text += json.dumps(staged_files(value))
            for what, secret in secrets.items():
                if secret in text:
                    seen[what].append(f"{resource.name}.{key}")
                    assert key in resource.secret_inputs, f"{what} in plain {resource.name}.{key}"
    # Not vacuous: each value really travels (harbor.yml in the step's stdin, provider, robot).
    assert "harbor-harbor.stdin" in seen["admin"] and "harbor-harbor.stdin" in seen["db"]
    assert "harbor-provider.password" in seen["admin"]
    assert "harbor-robot.secret" in seen["robot"]
    assert run.outputs["harborAdminPassword"] == secrets["admin"]
    assert run.outputs["harborRobotSecret"] == secrets["robot"]
    assert {"harborAdminPassword", "harborRobotSecret"} <= run.secret_outputs
    assert not {"harborUrl", "harborRobotName", "harborCaCertificate"} & run.secret_outputs
    robot = run.graph.named("harbor-robot")
    assert "secret" in robot.additional_secret_outputs
    step = run.graph.named("harbor-harbor")
    assert {"stdout", "stderr"} <= step.additional_secret_outputs


def test_the_harbor_key_is_secret_and_the_command_text_shows_only_a_hash() -> None:
    step = prod().graph.named("harbor-harbor")
    assert "stdin" in step.secret_inputs
    assert "sha256:" in step.inputs["create"] and "BEGIN" not in step.inputs["create"]
    assert "create" not in step.secret_inputs


# ---- certificates and hosts ----------------------------------------------------------------------


def staged_files(stdin: str) -> dict[str, str]:
    """The files a bundle stages (`k8sha_stage PATH MODE OWNER <<'K8SHA_FILE'` + base64), decoded."""
    files, lines = {}, iter(stdin.splitlines())
    for line in lines:
        if line.startswith("k8sha_stage ") and line.endswith("<<'K8SHA_FILE'"):
            path = shlex.split(line)[1]
            body = "".join(itertools.takewhile(lambda text: text != "K8SHA_FILE", lines))
            files[path] = base64.b64decode(body).decode()
    return files


def test_the_issued_certificate_is_served_and_trusted() -> None:
    run = prod()
    files = staged_files(run.graph.named("harbor-harbor").inputs["stdin"])
    issued = run.graph.named("harbor-server-cert")
    assert issued.type == "tls:index/locallySignedCert:LocallySignedCert"
    served = files["/etc/harbor/pki/tls.crt"]
    assert served.startswith("-----BEGIN CERTIFICATE-----") and files["/etc/harbor/pki/ca.crt"] == served
    assert files["/etc/harbor/pki/tls.key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert run.outputs["harborCaCertificate"] == served
    assert 'hostname: "10.20.0.40"' in files["/etc/harbor/harbor.yml"]


def test_a_custom_certificate_is_served_and_trusted_instead_of_an_issued_one() -> None:
    config = prod_config()
    config["harbor"].update(hostname="registry.prod.example.com", certificate=USER_CERT)
    config["harborTlsKey"] = USER_KEY
    run = run_harbor(config, ("harborTlsKey",))
    assert not [r for r in run.graph.resources.values() if r.name.startswith("harbor-server-")]
    files = staged_files(run.graph.named("harbor-harbor").inputs["stdin"])
    assert files["/etc/harbor/pki/tls.crt"] == files["/etc/harbor/pki/ca.crt"] == USER_CERT
    assert files["/etc/harbor/pki/tls.key"] == USER_KEY
    assert run.outputs["harborCaCertificate"] == USER_CERT


def test_an_existing_harbor_host_is_reached_with_its_pinned_key() -> None:
    config = prod_config()
    config["harbor"]["node"]["existing"] = {"hostKey": HOST_KEY, "address": "10.20.0.40"}
    run = run_harbor(config)
    step = run.graph.named("harbor-harbor")
    assert step.inputs["connection"]["hostKey"] == HOST_KEY
    assert run.graph.depends_on(step, run.graph.named("harbor-ready"))
    assert not [r for r in run.graph.resources.values() if r.type.startswith("libvirt:")]


def test_a_stack_without_harbor_has_no_harbor_config() -> None:
    """HarborRegistry takes a Target and knows no roles; the stack-side check is where its Args
    are derived: a stack without Harbor yields none."""
    config = prod_config()
    config["harbor"] = {"enabled": False}
    config["loadBalancer"]["harborFrontend"] = False
    spec = parse_stack(config)
    placement = place(spec)
    assert not placement.by_role(Role.HARBOR)
    with pytest.raises(ValueError, match=r"Harbor is not enabled in this stack"):
        harbor_config(spec, placement)
