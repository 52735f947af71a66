"""The real engine on the lab hypervisors: `up` of the guests stack's load balancers and etcd members
with the program itself (pulumi-libvirt defines the guests, pulumi-command bootstraps them over the
pinned SSH host keys), then a preview with no changes, an in-place change that touches only what it
must, and a `destroy` that leaves no guest, volume or state entry.

The stack sets `kubernetes.bootstrap: false` (no kubeadm step, add-on or kubernetes provider: these
guests cannot download Kubernetes release files; the cluster tier runs that layer), and the
control-plane machines are left out (`--exclude` with dependents) so that only the five guests boot. Runs where the
pulumi CLI and every provider plugin are installed; otherwise skips naming what is missing. The engine
runs inside the lab network namespace (tests/guests/engine_run.py): the guests live on its bridge.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from k8s_ha.cli.engine import own_type
from tests.engine.conftest import make_project
from tests.engine.state import assert_no_secret_in_clear, deployment
from tests.guests.config import PINS, stack_config
from tests.guests.domain_type import probe_domain_type
from tests.guests.engine_run import changed_names, engine
from tests.guests.hypervisors import LabHypervisors
from tests.guests.stack import BOOTED

pytestmark = pytest.mark.guests

ROOT = Path(__file__).resolve().parents[2]
LEFT_OUT = re.compile(r"^cp\d+-(root|cloudinit)$")  # the control plane's disks; dependents follow


@pytest.fixture(scope="module")
def engine_installed() -> None:
    from k8s_ha.cli.engine import cli_path
    from k8s_ha.cli.plugins import missing_message, missing_plugins

    if cli_path() is None:
        pytest.skip("no pulumi CLI (scripts/engine builds it): the binding driver covers these guests")
    if missing := missing_plugins():
        pytest.skip(f"engine path skipped: {missing_message(missing)}")


def test_engine_up_change_destroy_on_the_lab_hypervisors(engine_installed: None, base_image: Path,
                                                        work_dir: Path) -> None:
    probe = probe_domain_type(base_image)
    with LabHypervisors() as hvs:
        config: dict[str, Any] = stack_config({n: hv.uri for n, hv in hvs.hypervisors.items()}, hvs.client_ip,
                                              base_image, probe.domain_type)
        config["kubernetes"] = {"bootstrap": False}
        project = make_project(work_dir / "engine-project", "guests", config)
        try:
            code, planned, text = engine(hvs.netns_argv, project, "preview")
            assert code == 0, text
            assert not [urn for urn in planned if own_type(urn).startswith("pulumi:providers:kubernetes")]
            exclude = [urn for urn in planned if LEFT_OUT.match(urn.rsplit("::", 1)[1])]
            assert len(exclude) == 6, exclude

            code, _, text = engine(hvs.netns_argv, project, "up", exclude)
            assert code == 0, text
            existing = {r["urn"] for r in deployment(project).get("resources", [])}
            names = {urn.rsplit("::", 1)[1] for urn in existing}
            assert {f"{n}-ready" for n in BOOTED} <= names and "etcd-health" in names, sorted(names)
            assert not {n for n in names if re.match(r"cp\d+-", n)}, "a left-out machine was made"
            for name in BOOTED:  # each guest runs on the hypervisor placement pinned it to
                domain = hvs[PINS[name]].connect().lookupByName(f"k8s-ha-guests-{name}")
                assert domain.isActive(), name
            vip = str(config["network"]["vip"])
            tcp = subprocess.run(hvs.netns_argv(["bash", "-c", f"exec 3<>/dev/tcp/{vip}/6443"]), timeout=30,
                                 check=False)
            assert tcp.returncode == 0, "HAProxy on the VIP does not accept"
            assert_no_secret_in_clear(project)

            code, ops, text = engine(hvs.netns_argv, project, "preview", exclude)
            assert code == 0 and not changed_names(ops, existing), (changed_names(ops, existing), text)

            project.config = copy.deepcopy(config)
            project.config["loadBalancer"]["haproxy"] = {"clientTimeoutS": 1234}
            project.write()
            code, ops, text = engine(hvs.netns_argv, project, "preview", exclude)
            assert code == 0, text
            assert set(changed_names(ops, existing)) == {"lb1-loadbalancer", "lb2-loadbalancer"}, changed_names(
                ops, existing)

            project.config = copy.deepcopy(config)
            project.config["workerPools"] = [{"name": "worker", "count": 1, "firstIp": "10.212.0.41", "vcpu": 1,
                                              "memoryMib": 1024, "diskGib": 20}]
            project.write()
            code, ops, text = engine(hvs.netns_argv, project, "preview", exclude)
            assert code == 0, text
            assert not changed_names(ops, existing), changed_names(ops, existing)
            added = {urn.rsplit("::", 1)[1] for urn, op in ops.items() if urn not in existing and op == "create"}
            assert {"worker-1-root", "worker-1-domain"} <= added, sorted(added)
        finally:
            project.config = config
            project.write()
            code, _, text = engine(hvs.netns_argv, project, "destroy")
        assert code == 0, text
        after = deployment(project)
        assert not after.get("resources") and not after.get("pending_operations"), after
        for hv in hvs.hypervisors.values():
            conn = hv.connect()
            assert not conn.listAllDomains(), [d.name() for d in conn.listAllDomains()]
            volumes = [v.name() for pool in conn.listAllStoragePools() for v in pool.listAllVolumes()]
            assert not volumes, volumes
    assert not hvs.leftovers(), hvs.leftovers()
