"""Which provider plugins the program needs, which of them this machine lacks, and installing those.

The engine discovers a missing plugin only when the first resource of that package registers,
after other resources may already exist. Checking up front, from the provider SDKs the program
really imports, lets the runner install every missing plugin (as `pulumi up` itself would) before
anything runs, and name in one message the ones that could not be installed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TextIO

# The module that pulls in every provider SDK the program can use.
PROGRAM_MODULE = "k8s_ha.resources.cluster"


@dataclass(frozen=True, order=True)
class Plugin:
    name: str
    version: str
    server: str | None = None

    def install_args(self) -> list[str]:
        """The `pulumi` arguments that install this plugin at this version."""
        server = ["--server", self.server] if self.server else []
        return ["plugin", "install", "resource", self.name, f"v{self.version}", *server]

    def install_command(self) -> str:
        return " ".join(["pulumi", *self.install_args()])


def _plugin_of(module: str) -> Plugin | None:
    """The plugin a provider SDK asks for, read from its `pulumi-plugin.json` like the engine does."""
    try:
        text = resources.files(module).joinpath("pulumi-plugin.json").read_text()
    except (FileNotFoundError, ModuleNotFoundError, NotADirectoryError):
        return None
    info = json.loads(text)
    if not info.get("resource"):
        return None
    version = info.get("version")
    if not version:  # some SDKs (pulumiverse) omit it: the plugin version is the package version
        dist = importlib.metadata.packages_distributions().get(module, [module])[0]
        version = importlib.metadata.version(dist)
    server = info.get("server")
    if isinstance(server, str) and server.startswith("github://api.github.com/"):
        server = "github://api.github.com/" + server.removeprefix("github://api.github.com/").split("/")[0]
    return Plugin(str(info["name"]), str(version).removeprefix("v"), server)


def required_plugins() -> list[Plugin]:
    """Every resource plugin whose SDK the program imports (importing the program loads them all)."""
    importlib.import_module(PROGRAM_MODULE)
    found = set()
    for name in list(sys.modules):
        if "." in name or not name.startswith(("pulumi_", "pulumiverse_")):
            continue
        plugin = _plugin_of(name)
        if plugin is not None:
            found.add(plugin)
    return sorted(found)


def plugin_dirs() -> list[Path]:
    home = Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")
    return [home / "plugins"]


def is_installed(plugin: Plugin) -> bool:
    """Installed in the plugin cache at this version, or an ambient `pulumi-resource-<name>` on PATH."""
    binary = f"pulumi-resource-{plugin.name}"
    for directory in plugin_dirs():
        if (directory / f"resource-{plugin.name}-v{plugin.version}" / binary).is_file():
            return True
    ambient_allowed = os.environ.get("PULUMI_IGNORE_AMBIENT_PLUGINS", "").lower() not in ("1", "true")
    return ambient_allowed and shutil.which(binary) is not None


def missing_plugins(required: list[Plugin] | None = None) -> list[Plugin]:
    return [p for p in (required_plugins() if required is None else required) if not is_installed(p)]


def install(plugins: list[Plugin], pulumi_cli: str, out: TextIO, env: dict[str, str] | None = None
            ) -> dict[Plugin, str]:
    """Install each plugin through `pulumi plugin install`; returns the ones that failed, each with
    the CLI's reason (the last line it wrote to stderr)."""
    failed: dict[Plugin, str] = {}
    for plugin in plugins:
        print(f"installing provider plugin {plugin.name} v{plugin.version}", file=out, flush=True)
        try:
            done = subprocess.run([pulumi_cli, *plugin.install_args()], capture_output=True, text=True,
                                  env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true", **(env or {})},
                                  timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            failed[plugin] = str(error)
            continue
        if done.returncode != 0:
            lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
            failed[plugin] = lines[-1] if lines else f"pulumi exited with {done.returncode} and said nothing"
        elif not is_installed(plugin):
            failed[plugin] = f"pulumi reported success, but the plugin is not in {plugin_dirs()[0]}"
    return failed


def missing_message(missing: list[Plugin], reasons: dict[Plugin, str] | None = None) -> str:
    """Every missing plugin with its install line; `reasons`: why installing each one here failed."""
    lines = [f"missing Pulumi provider plugin(s): {', '.join(f'{p.name} v{p.version}' for p in missing)}"]
    if reasons:
        lines.append("installing them here failed:")
        lines += [f"  {p.name} v{p.version}: {reasons[p]}" for p in missing if p in reasons]
    lines.append("nothing was created. Install them with:")
    lines += [f"  {p.install_command()}" for p in missing]
    lines.append("(or see docs/engine.md for plugins built from source)")
    return "\n".join(lines)
