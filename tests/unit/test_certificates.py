"""Certificate expiry: the masters' reports, the warnings, the chain that renews, the export and
`validate --stack-outputs`."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

import pytest

from k8s_ha.cli.main import main
from k8s_ha.model.certificates import expiry_warnings, step_report
from tests.unit.test_graph import COMMAND, ROOT, deployed

NOW = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


def test_a_step_report_is_read_from_its_lines_and_nothing_else() -> None:
    out = ("k8s-ha certificate apiserver 2027-12-07T07:00:00Z\nnoise\n"
           "k8s-ha certificate admin.conf 2027-12-08T07:00:00Z\nk8s-ha k8s-certs: no changes\n")
    assert step_report(out) == {"apiserver": "2027-12-07T07:00:00Z", "admin.conf": "2027-12-08T07:00:00Z"}
    assert step_report("") == {}


def test_only_what_expires_inside_the_window_is_warned_about_and_cas_are_not_renewed_by_up() -> None:
    expiries = {"cp1/apiserver": "2027-01-20T00:00:00Z", "etcd-ca": "2027-01-10T00:00:00Z",
                "admin-client": "2027-06-01T00:00:00Z", "old": "2026-12-01T00:00:00Z", "unknown": None}
    lines = expiry_warnings(expiries, 720, NOW)
    assert lines == [
        "certificate cp1/apiserver expires in 19.0 d (2027-01-20T00:00:00Z), inside pki.earlyRenewalHours (720 h):"
        " `up` renews it",
        "CA etcd-ca expires in 9.0 d (2027-01-10T00:00:00Z): the program does not replace a running cluster's CAs;"
        " plan a rotation (docs/kubernetes.md, Certificates)",
        "certificate old expired (2026-12-01T00:00:00Z), inside pki.earlyRenewalHours (720 h): `up` renews it",
    ]
    assert expiry_warnings(expiries, 0, NOW) == [lines[-1].replace("(720 h)", "(0 h)")]


def test_the_masters_certificates_steps_run_one_at_a_time_after_every_master_is_in_the_cluster_and_upgraded(
) -> None:
    graph = deployed("Pulumi.prod.yaml")
    chain = [f"cp{i}-k8s-certs" for i in (1, 2, 3)]
    assert sorted(r.name for r in graph.of_type(COMMAND) if r.name.endswith("-k8s-certs")) == chain
    for before, after in itertools.pairwise(chain):
        assert graph.depends_on(graph.named(after), graph.named(before)), (after, before)
    assert graph.depends_on(graph.named("cp1-k8s-certs"), graph.named("cp1-k8s-init"))
    for i in (2, 3):
        assert graph.depends_on(graph.named(f"cp{i}-k8s-certs"), graph.named(f"cp{i}-k8s-join"))
        assert graph.depends_on(graph.named(f"cp{i}-k8s-certs"), graph.named(f"cp{i}-k8s-upgrade"))
    # Never beside an upgrade (two apiservers would restart at once): after the last master's; and
    # what talks to the API through the VIP in the same `up` (the CoreDNS patch, the workers'
    # drains) waits for the end of the chain, since the Kubernetes provider does not retry.
    assert graph.depends_on(graph.named("cp1-k8s-certs"), graph.named("cp3-k8s-upgrade"))
    assert graph.depends_on(graph.named("patch-deployment-kube-system-coredns"), graph.named("cp3-k8s-certs"))
    drains = [r for r in graph.of_type(COMMAND) if r.name.endswith("-k8s-upgrade-drain")]
    assert drains and all(graph.depends_on(d, graph.named("cp3-k8s-certs")) for d in drains)
    # The joins never wait for it: a new master joins without the chain.
    for join in (r for r in graph.of_type(COMMAND) if r.name.endswith("-k8s-join")):
        assert not any(a.name.endswith("-k8s-certs") for a in graph.ancestors(join)), join.name


def test_the_stack_exports_every_certificate_the_program_issues() -> None:
    graph = deployed("Pulumi.prod.yaml")
    names = set(graph.stack_outputs["certificates"])
    assert {"etcd-ca", "kubernetes-ca", "front-proxy-ca", "apiserver-etcd-client", "admin-client",
            "etcd-healthcheck-client"} <= names
    assert {n for n in names if n.startswith("etcd-") and n.endswith(("-server", "-peer"))}


def _outputs(tmp_path: Path, outputs: object) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    return path


def test_validate_and_plan_warn_from_the_deployed_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=300)).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = _outputs(tmp_path, {"certificates": {"cp1/apiserver": soon, "admin-client": later}})
    for command in ("validate", "plan"):
        assert main([command, "--stack-file", str(ROOT / "Pulumi.prod.yaml"), "--stack-outputs", str(path)]) == 0
        err = capsys.readouterr().err
        assert "WARNING: certificate cp1/apiserver expires in 3.0 d" in err and "admin-client" not in err


def test_validate_refuses_against_the_deployed_outputs_and_unreadable_ones(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack = str(ROOT / "Pulumi.prod.yaml")
    path = _outputs(tmp_path, {"kubernetesVersion": "1.38.0"})
    assert main(["validate", "--stack-file", stack, "--stack-outputs", str(path)]) == 2
    assert "kubeadm does not downgrade" in capsys.readouterr().err
    assert main(["validate", "--stack-file", stack, "--stack-outputs", str(_outputs(tmp_path, [1]))]) == 2
    assert "not the JSON object" in capsys.readouterr().err
    assert main(["validate", "--stack-file", stack, "--stack-outputs", str(tmp_path / "none.json")]) == 2
    assert "pulumi stack output --json" in capsys.readouterr().err
