"""`render --out`: a directory the user owns is never written into, and an earlier render is replaced
whole, so no host directory of it survives beside the new output."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from k8s_ha.cli import exits
from k8s_ha.cli.main import main
from k8s_ha.cli.render_out import MARKER
from tests.unit.harness import ROOT


def render(stack: Path, out: Path) -> int:
    return main(["render", "--stack-file", str(stack), "--out", str(out)])


def test_a_non_empty_directory_render_did_not_write_is_refused(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file\n")
    assert render(ROOT / "Pulumi.dev.yaml", out) == exits.BAD_INPUT
    err = capsys.readouterr().err
    assert f"{out} is not empty and holds no {MARKER} (render did not write it)" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_file_in_place_of_the_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "file"
    out.write_text("x")
    assert render(ROOT / "Pulumi.dev.yaml", out) == exits.BAD_INPUT
    assert "exists and is not a directory" in capsys.readouterr().err


def test_an_empty_directory_is_rendered_into(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    assert render(ROOT / "Pulumi.dev.yaml", out) == exits.OK
    assert (out / MARKER).is_file() and any(p.is_dir() for p in out.iterdir())


def test_an_earlier_render_is_replaced_whole(tmp_path: Path) -> None:
    """Render the dev stack with two workers, then as it is (one): the second worker's directory, and a
    file left inside a kept host's directory, are gone; the marker stays."""
    document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    document["config"]["k8s-ha:workerPools"][0]["count"] = 2
    bigger = tmp_path / "Pulumi.bigger.yaml"
    bigger.write_text(yaml.safe_dump(document))
    out = tmp_path / "out"
    assert render(bigger, out) == exits.OK
    first = {p.name for p in out.iterdir() if p.is_dir()}
    (out / "lb1" / "stale-file").write_text("from an earlier render\n")
    assert render(ROOT / "Pulumi.dev.yaml", out) == exits.OK
    second = {p.name for p in out.iterdir() if p.is_dir()}
    assert len(first - second) == 1 and second < first, (first, second)
    assert not (out / "lb1" / "stale-file").exists()
    assert (out / MARKER).is_file()
