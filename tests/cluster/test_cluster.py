"""The guest cluster tier: kubeadm HA on real libvirt guests (where hardware virtualisation lets them
carry it; on this kind of machine it skips with the measured reason), installed from the offline lab
bundle, checked against the verification checklist and put through the combined failure drill.

One cluster per session (booting and bootstrapping nine TCG guests is the expensive part): the
tests run in file order on it. The numbers (time to cluster per layer, idle load, checklist, drill)
go to bench/results/cluster.json with the date and the commit, whatever the outcome; nothing here
judges a duration.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.bundle_server import LabBundleServer
from tests.cluster.checklist import agnhost_image, nodes_ready, run_checklist, wait_all_ready

# The checklist's tests, shared with the other cluster tier; they run on this module's fixtures.
from tests.cluster.checklist_tests import (  # noqa: F401
    test_a_deployment_spread_across_the_workers_serves,
    test_controller_manager_and_scheduler_leases_are_held,
    test_dns_resolves_a_service_name_from_a_pod,
    test_every_etcd_member_is_healthy,
    test_every_kube_system_pod_is_running,
    test_every_node_is_ready,
    test_haproxy_sees_every_apiserver_up,
    test_metrics_server_reports_every_node,
    test_the_exported_kubeconfig_reaches_the_api_through_the_vip,
)
from tests.cluster.cluster import ClusterStack
from tests.cluster.config import CLUSTER, CP_NAMES, ETCD_NAMES, LB_NAMES, NODES, WORKER_NAMES
from tests.cluster.drill import seed_001
from tests.guests.domain_type import DomainTypeProbe
from tests.guests.hypervisors import LabHypervisors
from tests.guests.usage import cpu_percent, qemu_pids, rss_mib
from tests.support.lab_artifacts import build_times, lab_binary, lab_pins
from tests.support.provenance import provenance

pytestmark = pytest.mark.cluster_guests

ROOT = Path(__file__).resolve().parents[2]
RESULTS_FILE = ROOT / "bench" / "results" / "cluster.json"
READY_TIMEOUT_S = 1800
IDLE_SAMPLE_S = 60.0
RESULTS: dict[str, Any] = {}


def _write_results() -> None:
    RESULTS.update(provenance())
    RESULTS_FILE.write_text(json.dumps(RESULTS, indent=2, default=str) + "\n")
    print(f"wrote {RESULTS_FILE.relative_to(ROOT)}")


@pytest.fixture(scope="module")
def cluster(cluster_image: Path, lab_artifacts: Path, capacity: DomainTypeProbe,
            work_dir: Path) -> Iterator[ClusterStack]:
    probe = capacity
    print(f"domain type: {probe.domain_type} ({probe.reason})")
    RESULTS.clear()
    RESULTS["topology"] = {"load_balancers": list(LB_NAMES), "etcd": list(ETCD_NAMES), "masters": list(CP_NAMES),
                           "workers": list(WORKER_NAMES), "domain_type": probe.domain_type}
    RESULTS["artifact_build_seconds"] = sum(int(t["seconds"]) for t in build_times(lab_artifacts / "times"))
    kubectl = lab_binary(lab_artifacts, "kubectl")
    hvs = LabHypervisors()
    with hvs, LabBundleServer(hvs, lab_artifacts / "bundle", work_dir / "registry") as served:
        layout, path = agnhost_image(lab_artifacts)
        served.push(layout, path)
        RESULTS["bundle_served_after_s"] = served.started_s
        stack = ClusterStack(hvs, cluster_image, probe.domain_type, work_dir / "cluster",
                             lab_pins(lab_artifacts), kubectl)
        try:
            t0 = time.monotonic()
            stack.boot()
            boot_s = time.monotonic() - t0
            print(f"define -> SSH (s): {stack.reachable}")
            steps = stack.bootstrap()
            wait_all_ready(stack, READY_TIMEOUT_S)
            total_s = time.monotonic() - t0
            RESULTS["time_to_cluster"] = {
                "total_s": round(total_s, 1), "boot_s": round(boot_s, 1), "define_to_ssh_s": stack.reachable,
                "steps_s": round(total_s - boot_s, 1), "layers_s": stack.layer_seconds(), "per_step_s": steps,
                "step_spans_s": stack.step_spans}
            print(f"cluster all Ready after {total_s:.0f} s: {stack.layer_seconds()}")
            pids = qemu_pids(hvs, NODES, cluster=CLUSTER)
            RESULTS["idle"] = {"cpu_percent_of_a_core": cpu_percent(pids, IDLE_SAMPLE_S),
                               "rss_mib": {n: rss_mib(p) for n, p in pids.items()},
                               "loadavg": {n: stack.run(n, "cat /proc/loadavg").stdout.split()[0]
                                           for n in (*CP_NAMES, WORKER_NAMES[0])}}
            print(f"idle load: {RESULTS['idle']}")
            yield stack
        finally:
            _write_results()
            failed = stack.close()
    leftovers = hvs.leftovers()
    assert not failed and not leftovers, f"the tier left things behind: {failed} {leftovers}"


@pytest.fixture(scope="module")
def checklist(cluster: ClusterStack, lab_artifacts: Path) -> dict[str, Any]:
    _layout, path = agnhost_image(lab_artifacts)
    result = run_checklist(cluster, f"registry.k8s.io/{path}")
    RESULTS["checklist"] = result
    print(json.dumps(result, indent=1, default=str))
    return result


def test_seed_001_lb_master_and_worker_lost_together(cluster: ClusterStack, checklist: dict[str, Any]) -> None:
    measured = seed_001(cluster)
    RESULTS["seed_001"] = {"longest_api_gap_s": measured.seconds, **measured.details}
    details = measured.details
    print(json.dumps(RESULTS["seed_001"], indent=1, default=str))
    assert details["api"]["longest_gap_s"] < 60, details["api"]  # it answered again (the figure is reported)
    assert details["vip_holders_during"] == ["lb2"], details
    assert not details["both_held_vip_at_s"], details
    assert details["pods_rescheduled_s"] is not None and details["all_ready_after_power_on_s"] is not None
    assert nodes_ready(cluster) == {n: True for n in (*CP_NAMES, *WORKER_NAMES)}  # rejoined, no manual step
    assert {v["holder"] for v in details["leases_after"].values()} <= set(CP_NAMES)
    assert details["haproxy_after"] == {lb: {cp: "UP" for cp in CP_NAMES} for lb in LB_NAMES}
