"""Every file every host of every example stack receives, pinned by sha256.

A refactor must leave the rendered output byte-identical; a deliberate change (a new default, a
template fix) updates the manifest in the same commit, so the diff shows exactly which hosts' files
moved:  venv/bin/python -m tests.render.test_golden --update
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import pytest

from k8s_ha.render.tree import write_tree
from tests.conftest import EXAMPLE_STACKS, ROOT, load_example

MANIFEST = Path(__file__).with_name("golden") / "render-sha256.json"


def digests(stack_file: str) -> dict[str, str]:
    spec, placement = load_example(stack_file)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        write_tree(spec, placement, out)
        return {
            str(path.relative_to(out)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(out.rglob("*")) if path.is_file()
        }


@pytest.mark.parametrize("stack_file", EXAMPLE_STACKS)
def test_rendered_files_match_the_manifest(stack_file: str) -> None:
    pinned = json.loads(MANIFEST.read_text())[stack_file]
    actual = digests(stack_file)
    assert sorted(actual) == sorted(pinned), "the set of rendered files changed"
    changed = sorted(path for path in pinned if actual[path] != pinned[path])
    assert not changed, f"{stack_file}: rendered files changed: {changed}"


def update() -> None:
    MANIFEST.parent.mkdir(exist_ok=True)
    manifest = {name: digests(name) for name in EXAMPLE_STACKS}
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"{MANIFEST.relative_to(ROOT)}: {sum(map(len, manifest.values()))} files")


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        raise SystemExit("usage: python -m tests.render.test_golden --update")
    update()
