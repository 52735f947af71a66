"""A stack's state as the engine keeps it, read back through the CLI, and the check that no generated
secret sits in it in clear (the engine tiers share these)."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from k8s_ha.cli.engine import cli_path
from tests.engine.conftest import Project
from tests.unit.harness import SECRET_SIG, SIG_KEY


def pulumi(project: Project, *args: str, stdin: str | None = None) -> str:
    cli = cli_path()
    assert cli is not None
    done = subprocess.run([cli, *args, "--stack", project.stack, "--cwd", str(project.directory)],
                          env={**os.environ, **project.env, "PULUMI_SKIP_UPDATE_CHECK": "true"},
                          input=stdin, capture_output=True, text=True, timeout=300, check=True)
    return done.stdout


def deployment(project: Project, *, show_secrets: bool = False) -> dict[str, Any]:
    args = ["stack", "export"] + (["--show-secrets"] if show_secrets else [])
    exported: dict[str, Any] = json.loads(pulumi(project, *args))
    return exported["deployment"]


# Providers whose outputs are generated secrets: private keys, passwords, tokens, robot secrets.
GENERATING = ("tls:", "random:", "harbor:")
# A random resource's value, whether or not the provider marks it secret: a RandomString or RandomId
# also stores it as its resource ID, in clear.
RANDOM_VALUES = ("result", "hex", "base64", "b64Std", "b64Url", "dec")
# Generated on purpose as public: a bootstrap token's ID half (kubeadm shows it in `token list`).
PUBLIC = ("bootstrap-token-id",)


def generated_secrets(deployment_: dict[str, Any]) -> list[str]:
    """The values the program generates as secrets, decrypted (an exported deployment with
    --show-secrets): every secret output of a generating resource and every random value. Not every
    string inside any secret: a command's secret connection also holds host addresses and public
    host keys, which rightly appear in clear elsewhere."""
    found: list[str] = []

    def strings(item: Any) -> None:
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            for v in item.values():
                strings(v)
        elif isinstance(item, list):
            for v in item:
                strings(v)

    for resource in deployment_.get("resources", []):
        if not resource["type"].startswith(GENERATING) or resource["urn"].rsplit("::", 1)[1] in PUBLIC:
            continue
        for key, value in (resource.get("outputs") or {}).items():
            if isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG and "plaintext" in value:
                strings(json.loads(value["plaintext"]))
            elif resource["type"].startswith("random:") and key in RANDOM_VALUES:
                strings(value)
    return [s for s in found if len(s) >= 8]


def assert_no_secret_in_clear(project: Project, *, at_least: int = 5) -> None:
    """Every generated password, token and private key is in the state only encrypted: grep the state
    files for the decrypted values themselves."""
    secrets = generated_secrets(deployment(project, show_secrets=True))
    assert any("PRIVATE KEY" in s for s in secrets) and len(secrets) >= at_least, "expected keys and passwords in state"
    state_files = list(project.state_dir.rglob("*.json"))
    assert state_files
    for state_file in state_files:
        text = state_file.read_text()
        leaked = [s[:12] for s in secrets if s in text or json.dumps(s)[1:-1] in text]
        assert not leaked, f"{state_file.name} holds secrets in clear (first characters: {leaked})"
