"""Which Kubernetes version changes are upgrades kubeadm makes: the program's rule (validate with
the running version, and preview/up against the stack's `kubernetesVersion` output) and the nodes'
(k8s-lib.sh, run by real bash) must give the same answer, because either may be the one that
refuses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from k8s_ha.cli.main import main
from k8s_ha.model import versions

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "configs" / "scripts" / "k8s-lib.sh"

CASES = {
    ("1.35.4", "1.36.4"): None,  # one minor up
    ("1.36.1", "1.36.4"): None,  # a patch
    ("1.36.4", "1.36.4"): None,  # nothing to do
    ("1.35.4", "1.37.2"): "skips 1.36",
    ("1.36.4", "1.35.8"): "does not downgrade",
    ("1.36.4", "1.36.1"): "does not downgrade",
    ("1.36.4", "2.0.0"): "within one major version",
}


def node_refusal(have: str, want: str) -> str:
    done = subprocess.run(["bash", "-c", f'set -euo pipefail; . "{LIB}"; k8s_upgrade_refusal "$1" "$2"', "-",
                           have, want], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.strip()


@pytest.mark.parametrize(("have", "want"), list(CASES))
def test_program_and_nodes_refuse_the_same_changes_for_the_same_reason(have: str, want: str) -> None:
    expected = CASES[have, want]
    problem, refusal = versions.upgrade_problem(have, want), node_refusal(have, want)
    if expected is None:
        assert problem is None and refusal == ""
    else:
        assert problem is not None and expected in problem
        assert refusal == problem


def test_validate_refuses_a_skipped_minor_from_the_running_version(capsys: pytest.CaptureFixture[str]) -> None:
    stack = str(ROOT / "Pulumi.dev.yaml")  # versions.kubernetes 1.36.4
    assert main(["validate", "--stack-file", stack, "--running-kubernetes", "1.34.9"]) == 2
    err = capsys.readouterr().err
    assert "versions.kubernetes: Kubernetes 1.34.9 to 1.36.4 skips 1.35" in err
    assert "set versions.kubernetes to a 1.35 release first" in err
    assert main(["validate", "--stack-file", stack, "--running-kubernetes", "1.37.0"]) == 2
    assert "does not downgrade; put versions.kubernetes back to 1.37.0" in capsys.readouterr().err
    assert main(["validate", "--stack-file", stack, "--running-kubernetes", "1.35.4"]) == 0
