"""Read a stack's configuration the way Pulumi does, from a stack file or from the running program.

Only `k8s-ha:` keys belong to us (other namespaces such as `libvirt:` are left alone). Secure values
stay opaque: the CLI never decrypts, it only needs to know which keys are secret.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from k8s_ha.model.errors import Problem, SpecError
from k8s_ha.model.spec import PROJECT

SECRET_PLACEHOLDER = "<secret>"


# Namespaces other programs' config lives in (providers, Pulumi itself): never a misspelt ours.
FOREIGN_NAMESPACES = frozenset({"pulumi", "libvirt", "command", "tls", "random", "kubernetes", "harbor"})


@dataclass(frozen=True)
class RawStack:
    config: dict[str, Any]
    secret_keys: frozenset[str]
    # Found while reading (config under a misspelt namespace): reported with the spec's problems.
    problems: tuple[Problem, ...] = ()


def namespace_problems(keys: Iterable[str]) -> tuple[Problem, ...]:
    """Config that this project would ignore because its namespace is not `k8s-ha`: a namespace
    close to ours, or the only non-provider namespace of a file with none of our keys."""
    ours = False
    others: dict[str, list[str]] = {}
    for full_key in keys:
        namespace, _, _key = str(full_key).rpartition(":")
        if namespace in ("", PROJECT):
            ours = True
        elif namespace not in FOREIGN_NAMESPACES:
            others.setdefault(namespace, []).append(str(full_key))
    return tuple(
        Problem(keys_there[0], f"namespace {namespace!r} is not this project's: the stack file uses "
                f"{namespace!r} for {len(keys_there)} key(s), this project reads {PROJECT!r} "
                f"(the name in Pulumi.yaml); write them as '{PROJECT}:<key>'")
        for namespace, keys_there in others.items()
        if not ours or difflib.get_close_matches(namespace.lower(), [PROJECT], n=1, cutoff=0.6)
    )


def read_stack_file(path: Path) -> RawStack:
    """The project-namespaced config of a Pulumi.<stack>.yaml file; secure values become placeholders."""
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError([Problem(str(path), f"cannot read the stack file: {exc}")]) from None
    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        raise SpecError([Problem(str(path), "a stack file is a mapping with a 'config:' mapping")])
    config: dict[str, Any] = {}
    secrets: set[str] = set()
    for full_key, value in (document.get("config") or {}).items():
        namespace, _, key = str(full_key).rpartition(":")
        if namespace not in ("", PROJECT):
            continue
        if isinstance(value, dict) and set(value) == {"secure"}:
            secrets.add(key)
            value = SECRET_PLACEHOLDER
        config[key] = value
    problems = namespace_problems((document.get("config") or {}).keys())
    return RawStack(config=config, secret_keys=frozenset(secrets), problems=problems)


def from_runtime_config(values: dict[str, str], secret_keys: list[str]) -> RawStack:
    """Turn the engine's config (`pulumi.runtime.get_config_env()`) into the same RawStack.

    The engine passes objects and lists as JSON text; plain strings stay strings.
    """
    config: dict[str, Any] = {}
    for full_key, text in values.items():
        namespace, _, key = full_key.rpartition(":")
        if namespace != PROJECT:
            continue
        stripped = text.lstrip()
        config[key] = json.loads(text) if stripped[:1] in ("{", "[") else text
    secrets = frozenset(k.rpartition(":")[2] for k in secret_keys if k.startswith(PROJECT + ":"))
    return RawStack(config=config, secret_keys=secrets, problems=namespace_problems(values))


def from_running_program() -> RawStack:
    """The config the engine gave this program run (the language host sets it before we run)."""
    from pulumi.runtime import config as runtime_config

    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secrets = set(runtime_config.get_config_secret_keys_env())
    secrets |= {key for key in values if runtime_config.is_config_secret(key)}
    return from_runtime_config({k: str(v) for k, v in values.items()}, sorted(secrets))
