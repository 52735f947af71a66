"""Where a Pulumi project lives, where its state goes and which `pulumi` CLI runs it.

The installed package must never look inside itself for stack files or keep state in
site-packages: everything is found from the project directory the user works in, the way the
`pulumi` CLI finds `Pulumi.yaml`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PROJECT_FILE = "Pulumi.yaml"
STATE_DIR = ".cache/state"  # the file backend's state, under the project directory
ENGINE_BIN = ".cache/engine/bin"  # where scripts/engine puts the CLI it builds
# A repository checkout: scripts/engine builds the CLI here even when the command runs elsewhere.
CHECKOUT = Path(__file__).resolve().parents[2]


class ProjectError(Exception):
    """No usable project directory: the message names the directories looked at."""


def find_project_dir(start: Path) -> Path:
    """The nearest directory from `start` upward that holds a Pulumi.yaml."""
    start = start.resolve()
    for directory in (start, *start.parents):
        if (directory / PROJECT_FILE).is_file():
            return directory
    raise ProjectError(f"no {PROJECT_FILE} in {start} or any directory above it: run this from the project "
                       f"directory (the one with {PROJECT_FILE} and Pulumi.<stack>.yaml) or pass --project-dir")


def project_dir_of(given: Path | None, cwd: Path | None = None) -> Path:
    """`--project-dir` if given (it must hold a Pulumi.yaml), else the nearest one above `cwd`."""
    if given is None:
        return find_project_dir(Path.cwd() if cwd is None else cwd)
    if not (given / PROJECT_FILE).is_file():
        raise ProjectError(f"--project-dir {given}: no {PROJECT_FILE} there; name the directory that holds "
                           f"the project's {PROJECT_FILE} and Pulumi.<stack>.yaml")
    return given.resolve()


def _engine_candidates(project_dir: Path | None) -> list[Path]:
    candidates = []
    if os.environ.get("ENGINE_CACHE_DIR"):
        candidates.append(Path(os.environ["ENGINE_CACHE_DIR"]) / "bin/pulumi")
    if project_dir is None:
        try:
            project_dir = find_project_dir(Path.cwd())
        except ProjectError:
            project_dir = None
    if project_dir is not None:
        candidates.append(project_dir / ENGINE_BIN / "pulumi")
    if (CHECKOUT / "scripts/engine").is_file():
        candidates.append(CHECKOUT / ENGINE_BIN / "pulumi")
    return candidates


def cli_path(project_dir: Path | None = None) -> str | None:
    """`pulumi` on PATH, else the one scripts/engine built (under the project, or this checkout)."""
    found = shutil.which("pulumi")
    if found:
        return found
    for built in _engine_candidates(project_dir):
        if built.is_file() and os.access(built, os.X_OK):
            return str(built)
    return None


def local_backend_env(project_dir: Path) -> dict[str, str]:
    """A file backend in <project>/.cache/state unless the user chose a backend or is logged in."""
    if os.environ.get("PULUMI_BACKEND_URL"):
        return {}
    credentials = Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi") / "credentials.json"
    if credentials.is_file() and '"current": ""' not in credentials.read_text():
        return {}
    state = project_dir / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    return {"PULUMI_BACKEND_URL": state.as_uri()}
