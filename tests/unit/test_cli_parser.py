"""One parser for every command: `--help` lists them all, every option explains itself, and the exit
codes the help promises are the ones each class of failure gets."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from k8s_ha.cli import exits, project
from k8s_ha.cli.main import build_parser, main
from tests.unit.harness import ROOT

COMMANDS = ("validate", "plan", "render", "preview", "up", "refresh", "destroy", "image", "bundle",
            "verify-bundle", "serve-bundle")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_the_parser_has_exactly_the_documented_commands() -> None:
    assert sorted(subcommands(build_parser())) == sorted(COMMANDS)


def test_top_level_help_lists_every_command_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("    ") and line.strip()}
    assert set(COMMANDS) <= listed, sorted(set(COMMANDS) - listed)
    for code, meaning in ((0, "done"), (1, "the engine or a file operation failed"), (2, "bad input"),
                          (3, "a missing prerequisite")):
        assert f"  {code}  {meaning}" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_and_argument_has_help(command: str) -> None:
    sub = subcommands(build_parser())[command]
    assert sub.description, f"{command} has no description"
    for action in sub._actions:
        name = "/".join(action.option_strings) or action.dest
        assert action.help and action.help != argparse.SUPPRESS and action.help.strip(), f"{command} {name}"


def test_the_top_level_help_gives_each_command_a_summary() -> None:
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    summaries = {choice.dest: choice.help for choice in action._choices_actions}
    assert set(summaries) == set(COMMANDS) and all(summaries.values())


def test_exit_0_for_a_valid_stack(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--stack-file", str(ROOT / "Pulumi.dev.yaml")]) == exits.OK


def test_exit_2_for_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["plan"], ["no-such-command"], ["preview"], ["bundle", "--stack-file", "x"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == exits.BAD_INPUT, argv
    assert "the following arguments are required" in capsys.readouterr().err


def test_exit_2_for_an_invalid_stack_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "Pulumi.broken.yaml"
    broken.write_text((ROOT / "Pulumi.dev.yaml").read_text().replace("192.168.122.10", "not-an-address"))
    assert main(["validate", "--stack-file", str(broken)]) == exits.BAD_INPUT
    assert "network.vip" in capsys.readouterr().err


def test_exit_3_without_a_pulumi_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing named pulumi on PATH, in the project or in a checkout: exit 3 before the engine."""
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path)
    shutil.copy(ROOT / "Pulumi.dev.yaml", tmp_path)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("ENGINE_CACHE_DIR", raising=False)
    monkeypatch.setattr(project, "CHECKOUT", tmp_path / "no-checkout")
    assert main(["preview", "--stack", "dev", "--project-dir", str(tmp_path)]) == exits.MISSING
    assert "no pulumi CLI: put it on PATH or run scripts/engine" in capsys.readouterr().err
    assert not (tmp_path / ".cache").exists()


def test_exit_3_when_serve_bundle_has_no_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["serve-bundle", str(tmp_path)]) == exits.MISSING
    assert "docker-registry not found" in capsys.readouterr().err


def test_exit_1_for_a_failed_file_operation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify-bundle", str(tmp_path)]) == exits.FAILED
    assert "manifest.json: missing" in capsys.readouterr().err
