"""The engine commands as an installed package's user meets them, up to the point where the engine
would start: the project directory, where state goes, which CLI runs, destroy's confirmation, and the
provider plugins installed through the CLI.

A small shell script stands in for the `pulumi` CLI: it answers `version`, records every call,
installs plugins (or fails to, for the names in FAKE_PULUMI_FAIL) and refuses everything else with
the engine's real missing-passphrase error, so a run ends before any engine would start."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from k8s_ha.cli import engine, exits, project
from k8s_ha.cli.main import main
from k8s_ha.cli.plugins import missing_plugins, required_plugins
from tests.unit.harness import ROOT

# pulumi pkg/secrets/passphrase: what the CLI prints when no passphrase is set and it cannot prompt.
PASSPHRASE_ERROR = ('error: constructing secrets manager of type "passphrase": passphrase must be set with '
                    "PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE environment variables")
FAKE_PULUMI = f"""#!/bin/sh
printf '%s backend=%s\\n' "$*" "$PULUMI_BACKEND_URL" >> "$FAKE_PULUMI_LOG"
case "$1 $2" in
  "version "*) echo v3.274.1; exit 0 ;;
  "plugin install")
    case " $FAKE_PULUMI_FAIL " in *" $4 "*)
      echo "downloading $4 $5" >&2
      echo "error: 403 HTTP error fetching plugin $4 $5 (stand-in for the plugin source)" >&2
      exit 255 ;;
    esac
    mkdir -p "$PULUMI_HOME/plugins/resource-$4-$5"
    touch "$PULUMI_HOME/plugins/resource-$4-$5/pulumi-resource-$4"
    exit 0 ;;
esac
echo '{PASSPHRASE_ERROR}' >&2
exit 255
"""


def new_project(directory: Path, stack: str = "dev") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Pulumi.yaml", directory / "Pulumi.yaml")
    shutil.copy(ROOT / f"Pulumi.{stack}.yaml", directory / f"Pulumi.{stack}.yaml")
    return directory


@pytest.fixture
def fake_pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`pulumi` on an otherwise empty PATH, an empty plugin cache, no passphrase, no chosen backend;
    returns the log of the calls it received."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    script = bin_dir / "pulumi"
    script.write_text(FAKE_PULUMI)
    script.chmod(0o755)
    log = tmp_path / "pulumi-calls.log"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    monkeypatch.setenv("FAKE_PULUMI_LOG", str(log))
    monkeypatch.setenv("PULUMI_IGNORE_AMBIENT_PLUGINS", "true")
    for name in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_BACKEND_URL",
                 "FAKE_PULUMI_FAIL", "ENGINE_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    return log


# --- the project directory --------------------------------------------------------------------------

def test_no_project_above_the_current_directory_exits_2_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "somewhere/else"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    assert main(["preview", "--stack", "dev"]) == exits.BAD_INPUT
    err = capsys.readouterr().err
    assert f"no Pulumi.yaml in {work.resolve()} or any directory above it" in err and "--project-dir" in err


def test_a_project_dir_without_pulumi_yaml_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--stack", "dev", "--project-dir", str(tmp_path)]) == exits.BAD_INPUT
    assert f"--project-dir {tmp_path}: no Pulumi.yaml there" in capsys.readouterr().err


def test_the_nearest_project_above_the_current_directory_is_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    proj = new_project(tmp_path / "proj")
    (proj / "sub/dir").mkdir(parents=True)
    monkeypatch.chdir(proj / "sub/dir")
    assert main(["refresh", "--stack", "nope"]) == exits.BAD_INPUT
    assert f"no stack file Pulumi.nope.yaml in {proj.resolve()}" in capsys.readouterr().err
    assert project.project_dir_of(None) == proj.resolve()


def test_state_goes_under_the_project_unless_a_backend_is_chosen(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "home"))  # not logged in
    proj = new_project(tmp_path / "proj")
    assert project.local_backend_env(proj) == {"PULUMI_BACKEND_URL": (proj / ".cache/state").as_uri()}
    assert (proj / ".cache/state").is_dir()
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://bucket")
    assert project.local_backend_env(proj) == {}


def test_the_cli_is_found_on_path_else_under_the_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = new_project(tmp_path / "proj")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("ENGINE_CACHE_DIR", raising=False)
    monkeypatch.setattr(project, "CHECKOUT", tmp_path / "no-checkout")
    assert project.cli_path(proj) is None
    built = proj / ".cache/engine/bin/pulumi"
    built.parent.mkdir(parents=True)
    built.write_text("#!/bin/sh\n")
    built.chmod(0o755)
    assert project.cli_path(proj) == str(built)
    on_path = tmp_path / "bin/pulumi"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert project.cli_path(proj) == str(on_path)


# --- destroy asks -----------------------------------------------------------------------------------

class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def record_runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Path | None]]:
    """engine.run replaced by a recorder: these tests stop at the question, before any engine."""
    calls: list[tuple[str, str, Path | None]] = []

    def fake_run(action: str, stack: str, *, project_dir: Path | None = None) -> engine.RunResult:
        calls.append((action, stack, project_dir))
        return engine.RunResult(exits.OK)

    monkeypatch.setattr(engine, "run", fake_run)
    return calls


def test_destroy_without_a_terminal_or_yes_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    calls = record_runs(monkeypatch)
    monkeypatch.setattr(sys, "stdin", io.StringIO("dev\n"))
    proj = new_project(tmp_path / "proj")
    assert main(["destroy", "--stack", "dev", "--project-dir", str(proj)]) == exits.BAD_INPUT
    assert "pass --yes to destroy it" in capsys.readouterr().err
    assert calls == []


def test_destroy_goes_on_only_when_the_stack_name_is_typed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    calls = record_runs(monkeypatch)
    proj = new_project(tmp_path / "proj")
    monkeypatch.setattr(sys, "stdin", Terminal("yes\n"))
    assert main(["destroy", "--stack", "dev", "--project-dir", str(proj)]) == exits.BAD_INPUT
    err = capsys.readouterr().err
    assert "Type the stack name (dev)" in err and "cancelled ('yes' is not 'dev'); nothing was destroyed" in err
    assert calls == []
    monkeypatch.setattr(sys, "stdin", Terminal("dev\n"))
    assert main(["destroy", "--stack", "dev", "--project-dir", str(proj)]) == exits.OK
    assert calls == [("destroy", "dev", proj.resolve())]


def test_destroy_yes_does_not_ask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = record_runs(monkeypatch)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    proj = new_project(tmp_path / "proj")
    assert main(["destroy", "--stack", "dev", "--project-dir", str(proj), "--yes"]) == exits.OK
    assert calls == [("destroy", "dev", proj.resolve())]


# --- plugins installed through the CLI; the passphrase in one sentence ---------------------------------

def install_calls(log: Path) -> list[str]:
    return [line.split(" backend=")[0] for line in log.read_text().splitlines() if line.startswith("plugin install")]


def test_missing_plugins_are_installed_then_the_engine_runs(
        tmp_path: Path, fake_pulumi: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    proj = new_project(tmp_path / "proj")
    monkeypatch.chdir(proj)
    assert main(["preview", "--stack", "dev"]) == exits.FAILED  # the stand-in refuses the stack select
    out, err = capsys.readouterr()
    assert sorted(install_calls(fake_pulumi)) == sorted(p.install_command().removeprefix("pulumi ")
                                                        for p in required_plugins())
    assert "plugin install resource harbor v3.10.21 --server github://api.github.com/pulumiverse" in \
        install_calls(fake_pulumi)
    assert "installing provider plugin libvirt v0.5.4" in out
    assert missing_plugins() == []
    assert "Install them with" not in err and "pulumi plugin install" not in err
    # the passphrase error, as one sentence naming both variables; no code/stdout/stderr dump
    assert err.strip() == ("failed: the stack's secrets need a passphrase and none was given: set "
                           "PULUMI_CONFIG_PASSPHRASE to it, or PULUMI_CONFIG_PASSPHRASE_FILE to a file that holds "
                           "it (on a terminal you are asked for it)")
    assert "code:" not in err and "stdout:" not in err
    # state under the project directory, nowhere else
    stack_select = [line for line in fake_pulumi.read_text().splitlines() if "stack select" in line]
    assert stack_select and stack_select[0].endswith(f"backend={(proj.resolve() / '.cache/state').as_uri()}")


def test_plugins_that_cannot_be_installed_are_named_with_the_cli_reason(
        tmp_path: Path, fake_pulumi: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "libvirt harbor")
    proj = new_project(tmp_path / "proj")
    assert main(["up", "--stack", "dev", "--project-dir", str(proj)]) == exits.MISSING
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "missing Pulumi provider plugin(s): harbor v3.10.21, libvirt v0.5.4",
        "installing them here failed:",
        "  harbor v3.10.21: error: 403 HTTP error fetching plugin harbor v3.10.21 (stand-in for the plugin source)",
        "  libvirt v0.5.4: error: 403 HTTP error fetching plugin libvirt v0.5.4 (stand-in for the plugin source)",
        "nothing was created. Install them with:",
        "  pulumi plugin install resource harbor v3.10.21 --server github://api.github.com/pulumiverse",
        "  pulumi plugin install resource libvirt v0.5.4",
        "(or see docs/engine.md for plugins built from source)",
    ]
    assert not any("stack select" in line for line in fake_pulumi.read_text().splitlines())
    assert [p.name for p in missing_plugins()] == ["harbor", "libvirt"]


def test_scripts_up_installs_the_plugins_instead_of_listing_them(tmp_path: Path, fake_pulumi: Path) -> None:
    """scripts/up as a user runs it, in a copy of the checkout whose venv is this interpreter."""
    checkout = new_project(tmp_path / "checkout")
    (checkout / "scripts").mkdir()
    for script in ("up", "venv", "engine"):
        shutil.copy(ROOT / "scripts" / script, checkout / "scripts" / script)
    shutil.copy(ROOT / "requirements.txt", checkout)
    venv_bin = checkout / "venv/bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (venv_bin / "python").chmod(0o755)
    for stamp in (".installed-requirements.txt", ".installed-runtime"):  # scripts/venv: nothing to install
        shutil.copy(ROOT / "requirements.txt", checkout / "venv" / stamp)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([str(checkout / "scripts/up"), "dev", "preview"], capture_output=True, text=True,
                          env=env, stdin=subprocess.DEVNULL, timeout=300, check=False)
    assert done.returncode == exits.FAILED, done.stderr
    assert len(install_calls(fake_pulumi)) == len(required_plugins())
    assert "installing provider plugin kubernetes v4.25.0" in done.stdout
    assert "Install them with" not in done.stderr and "pulumi plugin install" not in done.stderr
    assert done.stderr.strip().endswith("PULUMI_CONFIG_PASSPHRASE_FILE to a file that holds it "
                                        "(on a terminal you are asked for it)")
    assert (checkout / ".cache/state").is_dir()
