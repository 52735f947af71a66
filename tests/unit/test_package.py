"""The package as users get it: `pip install .` and the layer rule its folders promise."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.render.test_golden import MANIFEST
from tests.unit.harness import ROOT

# Each layer may import only the layers before it (k8s_ha/__init__.py).
LAYERS = ["model", "placement", "render", "resources", "program", "cli"]


def imported_layers(path: Path) -> set[str]:
    """The k8s_ha layers a module imports, at any depth (function-level imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "k8s_ha" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_imports_only_the_layers_below_it(layer: str) -> None:
    package = ROOT / "k8s_ha"
    single = package / f"{layer}.py"
    modules = [single] if single.exists() else sorted((package / layer).rglob("*.py"))
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    wrong = {str(m.relative_to(ROOT)): sorted(imported_layers(m) - allowed) for m in modules}
    assert not {m: w for m, w in wrong.items() if w}, f"{layer} may import only {sorted(allowed)}"


def test_pip_install_ships_configs_types_and_pins(tmp_path: Path) -> None:
    """Install into a bare directory, then render a stack from outside the checkout: templates and
    scripts must come from the installed package, byte-identical to the checkout's output."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(ROOT)], check=True, capture_output=True, cwd=tmp_path)
    assert (site / "k8s_ha/py.typed").exists()
    (dist_info,) = site.glob("k8s_ha-*.dist-info")
    metadata = (dist_info / "METADATA").read_text()
    pins = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert all(f"Requires-Dist: {pin}" in metadata for pin in pins)
    out = tmp_path / "rendered"
    env = {**os.environ, "PYTHONPATH": str(site)}
    subprocess.run([sys.executable, "-m", "k8s_ha", "render", "--stack-file", str(ROOT / "Pulumi.dev.yaml"),
                    "--out", str(out)], check=True, capture_output=True, cwd=tmp_path, env=env)
    rendered = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in out.rglob("*") if p.is_file()}
    assert rendered == json.loads(MANIFEST.read_text())["Pulumi.dev.yaml"]
