"""up / no-change preview / in-place change / destroy of the dev stack on libvirt's test driver.

The stack leaves the Kubernetes layer out (`kubernetes.bootstrap: false`; test_preview previews the
whole program). The test driver accepts libvirt providers and pools but cannot upload volumes, so
`up --continue-on-error` (what it creates then does not depend on which upload fails first) creates
everything that does not wait for a disk image (PKI, random material, providers, Harbor secrets) and
fails at the uploads, naming the hypervisor. On what it created: a second preview changes none of
it; adding a worker and changing a HAProxy setting change none of it either (the plan lists only the
new worker's resources as creates); the state never holds a generated password, token or private
key in clear; `destroy` leaves no resource and no pending operation. The full cycle on booted
guests needs the guests tier's lab hypervisors (docs/engine.md).
"""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest

from k8s_ha.cli.engine import EXIT_ENGINE, own_type, run
from tests.engine.conftest import Project, make_project, on_hypervisor, stack_config
from tests.engine.state import assert_no_secret_in_clear, deployment
from tests.engine.testdriver import TestDriverDaemon

pytestmark = pytest.mark.engine


def steps(project: Project) -> dict[str, str]:
    """URN -> operation of a preview, from the engine's events."""
    ops: dict[str, str] = {}

    def record(event: Any) -> None:
        if event.resource_pre_event is not None:
            meta = event.resource_pre_event.metadata
            ops[meta.urn] = getattr(meta.op, "value", str(meta.op))

    out = io.StringIO()
    result = run("preview", project.stack, project_dir=project.directory, out=out, extra_env=project.env,
                 on_event=record)
    assert result.exit_code == 0, out.getvalue()
    return ops


def test_up_change_destroy_on_the_test_driver(engine_ready: None, test_driver: TestDriverDaemon,
                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = on_hypervisor(stack_config("Pulumi.dev.yaml"), test_driver.uri, pool="default-pool")
    # Without the Kubernetes layer: once the PKI exists the kubeconfig is known, and a preview of
    # kubernetes' yaml/v2 ConfigFile then dials the API server, which the test driver never runs.
    config["kubernetes"] = {**config.get("kubernetes", {}), "bootstrap": False}
    project = make_project(tmp_path / "project", "dev", config)

    out = io.StringIO()
    up = run("up", "dev", project_dir=project.directory, out=out, extra_env=project.env, continue_on_error=True)
    err = capsys.readouterr().err
    assert up.exit_code == EXIT_ENGINE, out.getvalue()
    assert f"hypervisor local ({test_driver.uri})" in err, err  # failed at the volume uploads

    created = {r["urn"] for r in deployment(project).get("resources", [])
               if not r["type"].startswith("pulumi:pulumi:Stack")}
    custom = {u for u in created if not own_type(u).startswith(("pulumi:providers:", "k8s-ha:"))}
    assert len(custom) >= 10, f"up created too little to test on: {sorted(custom)}"

    assert_no_secret_in_clear(project)

    # Second preview: nothing that exists changes.
    touched = {u: op for u, op in steps(project).items() if u in created and op != "same"}
    assert not touched, f"a no-change preview would change {touched}"

    # In-place change: one more worker and a HAProxy setting. What exists stays; only the new worker's
    # resources are added.
    changed = copy.deepcopy(config)
    changed["workerPools"][0]["count"] += 1
    changed["loadBalancer"]["haproxy"] = {"clientTimeoutS": 1234}
    project.config = changed
    project.write()
    ops = steps(project)
    touched = {u: op for u, op in ops.items() if u in created and op != "same"}
    assert not touched, f"adding a worker would change {touched}"
    new_worker = f"{changed['workerPools'][0]['name']}-{changed['workerPools'][0]['count']}"
    added = {u.rsplit("::", 1)[1] for u, op in ops.items() if u not in created and op == "create"}
    assert any(name.startswith(f"{new_worker}-") for name in added), sorted(added)

    out = io.StringIO()
    destroyed = run("destroy", "dev", project_dir=project.directory, out=out, extra_env=project.env)
    assert destroyed.exit_code == 0, out.getvalue()
    after = deployment(project)
    assert not after.get("resources"), after.get("resources")
    assert not after.get("pending_operations"), after.get("pending_operations")
