"""What users read (the package, its docs, the README, the shipped configs and scripts) refers to
nothing only the project's own tracker knows: no lab seed numbers, issue numbers or design notes.
cloud-init's "NoCloud seed" is a real name and stays allowed. A read-only scan."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

USER_FACING = ("k8s_ha", "docs", "configs", "README.md")
INTERNAL = {
    "a lab seed number": re.compile(r"\bseed[ _-]?\d{3}\b", re.IGNORECASE),
    "an issue number": re.compile(r"\bissue[ _-]?#?\d+\b", re.IGNORECASE),
    "the design notes": re.compile(r"\bDESIGN\.md\b", re.IGNORECASE),
}


def user_facing_files() -> list[Path]:
    found: list[Path] = []
    for name in USER_FACING:
        path = ROOT / name
        found += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [p for p in found if "__pycache__" not in p.parts]


def internal_references(text: str) -> list[str]:
    return [f"{what}: {match.group()!r}" for what, pattern in INTERNAL.items() for match in pattern.finditer(text)]


def test_user_facing_text_names_nothing_internal() -> None:
    files = user_facing_files()
    assert any(p.suffix == ".md" for p in files) and any(p.suffix == ".py" for p in files)
    found = [f"{path.relative_to(ROOT)}:{number}: {reference}"
             for path in files
             for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1)
             for reference in internal_references(line)]
    assert found == []


@pytest.mark.parametrize("text", ["as the seed 007 drill showed", "Seed-012 lab run", "see issue 23",
                                  "fixed in Issue #7", "design in DESIGN.md"])
def test_the_scan_catches_internal_references(text: str) -> None:
    assert internal_references(text)


@pytest.mark.parametrize("text", ["a NoCloud seed (user-data and network-config)",
                                  "lxc.mount.entry = {seed} var/lib/cloud/seed/nocloud",
                                  "leaf certificates are re-issued on pulumi up", "an issue with the mirror"])
def test_the_scan_leaves_ordinary_words(text: str) -> None:
    assert internal_references(text) == []
