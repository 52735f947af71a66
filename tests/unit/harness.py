"""Run the real Pulumi program under mocks and record the resource graph it registers.

`pulumi.runtime.Mocks` alone hides dependencies and secretness; the recording monitor keeps the
raw registration request, so tests can check parents, providers, dependency edges and which
inputs and outputs are secret exactly as the engine would receive them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import runpy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks

ROOT = Path(__file__).resolve().parents[2]
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SIG_KEY = "4dabf18193072939515e22adb298388d"


def _unwrap(value: Any) -> Any:
    """Raw registration values with secret wrappers removed (secretness is recorded separately)."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return _unwrap(value.get("value"))
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def _secret_paths(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            yield path
            return
        for key, item in value.items():
            yield from _secret_paths(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _secret_paths(item, f"{path}[{i}]")


@dataclass
class Registered:
    urn: str
    type: str
    name: str
    parent: str
    provider: str
    dependencies: set[str]
    inputs: dict[str, Any]
    secret_inputs: set[str]
    additional_secret_outputs: set[str]
    aliases: list[dict[str, Any]] = field(default_factory=list)  # each as the engine receives it

    @property
    def alias_names(self) -> set[str]:
        """The earlier names this resource answers to (aliases that rename it in place)."""
        return {a["spec"]["name"] for a in self.aliases if "name" in a.get("spec", {})}


@dataclass
class Graph:
    resources: dict[str, Registered] = field(default_factory=dict)
    stack_outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources.values() if r.type == typ]

    def named(self, name: str) -> Registered:
        (found,) = [r for r in self.resources.values() if r.name == name]
        return found

    def by_urn(self, urn: str) -> Registered:
        return self.resources[urn]

    def ancestors(self, resource: Registered) -> Iterator[Registered]:
        """Everything `resource` waits for, through dependencies, explicit providers (the engine
        creates a provider before what uses it) and children."""
        seen: set[str] = set()
        stack = [*resource.dependencies, resource.provider.rsplit("::", 1)[0]]
        while stack:
            urn = stack.pop()
            if urn in seen or urn not in self.resources:
                continue
            seen.add(urn)
            dep = self.resources[urn]
            yield dep
            stack.extend(dep.dependencies)
            stack.append(dep.provider.rsplit("::", 1)[0])
            stack.extend(r.urn for r in self.resources.values() if r.parent == urn)  # a component = its children

    def depends_on(self, resource: Registered, other: Registered) -> bool:
        return any(a.urn == other.urn for a in self.ancestors(resource))

    def depth(self, resource: Registered, memo: dict[str, int] | None = None) -> int:
        """Length of the longest dependency chain below `resource` (custom resources only)."""
        memo = {} if memo is None else memo
        if resource.urn in memo:
            return memo[resource.urn]
        memo[resource.urn] = 0
        deps = [self.resources[u] for u in resource.dependencies if u in self.resources]
        best = 0
        for dep in deps:
            best = max(best, self.depth(dep, memo) + 1)
        memo[resource.urn] = best
        return best


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks, graph: Graph) -> None:
        super().__init__(mocks)
        self.graph = graph

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        raw = json_format.MessageToDict(request.object)
        self.graph.resources[response.urn] = Registered(
            urn=response.urn,
            type=request.type,
            name=request.name,
            parent=request.parent,
            provider=request.provider,
            dependencies=set(request.dependencies),
            inputs=_unwrap(raw),
            secret_inputs={p.split(".")[0].split("[")[0] for p in _secret_paths(raw)},
            additional_secret_outputs=set(request.additionalSecretOutputs),
            aliases=[json_format.MessageToDict(alias) for alias in request.aliases],
        )
        return response


def _fake_pem(kind: str, seed: str) -> str:
    body = base64.b64encode(hashlib.sha256(seed.encode()).digest() * 2).decode()
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n"


class Mocks(pulumi.runtime.Mocks):
    """Provider outputs shaped like the real ones, so renderers get plausible text."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        outputs = dict(args.inputs)
        name, typ = args.name, args.typ
        if typ == "tls:index/privateKey:PrivateKey":
            outputs.update(
                privateKeyPem=_fake_pem("PRIVATE KEY", name),
                privateKeyOpenssh=_fake_pem("OPENSSH PRIVATE KEY", name),
                publicKeyPem=_fake_pem("PUBLIC KEY", name),
                publicKeyOpenssh=f"ssh-ed25519 {base64.b64encode(name.encode()).decode()}\n",
            )
        elif typ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
            outputs["certPem"] = _fake_pem("CERTIFICATE", name)
        elif typ == "tls:index/certRequest:CertRequest":
            outputs["certRequestPem"] = _fake_pem("CERTIFICATE REQUEST", name)
        elif typ in ("random:index/randomString:RandomString", "random:index/randomPassword:RandomPassword"):
            outputs["result"] = hashlib.sha256(name.encode()).hexdigest()[: int(args.inputs.get("length", 16))]
        elif typ.startswith("command:remote:Command"):
            outputs.update(stdout="", stderr="")
        return f"{name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def config_values(config: dict[str, Any]) -> dict[str, str]:
    """The engine's shape: namespaced keys, objects as JSON text, strings as they are."""
    return {f"k8s-ha:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def run_program(config: dict[str, Any], secret_keys: tuple[str, ...] = (), *, preview: bool = False,
                program_file: Path = ROOT / "__main__.py", mocks: Mocks | None = None) -> Graph:
    """Run a Pulumi program (default: ROOT/__main__.py) under mocks with `config` (keys without namespace).
    `mocks`: other provider outputs (the guests tier's real key material)."""
    graph = Graph()
    mocks = mocks or Mocks()
    pulumi.runtime.settings.ROOT.set(None)  # a fresh stack per run, not the previous run's exports
    pulumi.runtime.set_mocks(mocks, project="k8s-ha", stack="test", preview=preview,
                             monitor=RecordingMonitor(mocks, graph))
    pulumi.runtime.set_all_config(config_values(config), [f"k8s-ha:{k}" for k in secret_keys])

    exports: dict[str, pulumi.Output[Any]] = {}

    @pulumi.runtime.test  # type: ignore[misc]
    def program() -> pulumi.Output[Any]:
        runpy.run_path(str(program_file), run_name="__main__")
        root = pulumi.runtime.get_root_resource()
        exports.update({k: pulumi.Output.from_input(v) for k, v in getattr(root, "outputs", {}).items()})
        return pulumi.Output.all(*exports.values())

    program()
    record_exports(exports, graph.stack_outputs, graph.secret_outputs)
    return graph


def record_exports(exports: dict[str, pulumi.Output[Any]], values: dict[str, Any], secrets: set[str]) -> None:
    """Each export's resolved value into `values`, its name into `secrets` when it is secret; call
    after the `pulumi.runtime.test` program returned (the test loop has resolved every future)."""
    for key, output in exports.items():
        data = output._data.result()
        values[key] = data.value
        if data.is_secret:
            secrets.add(key)
