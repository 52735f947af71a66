"""docs/examples/etcd_on_existing_hosts.py: one component on its own, with no stack model at all.

The example runs as a whole program under the recording mock monitor; the assertions are what a
user relies on: one member step per host over SSH with that host's pinned key, a health gate after
all of them, secrets kept secret, and bundles that configure exactly these members.
"""

from __future__ import annotations

import base64
import re

from tests.unit.harness import ROOT, Graph, run_program

EXAMPLE = ROOT / "docs/examples/etcd_on_existing_hosts.py"
HOSTS = {"etcd-a": "10.0.0.11", "etcd-b": "10.0.0.12", "etcd-c": "10.0.0.13"}
HOST_KEYS = {name: f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{name}" for name in HOSTS}
COMMAND = "command:remote:Command"


def run() -> Graph:
    config = {"hosts": HOSTS, "hostKeys": HOST_KEYS, "sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"}
    return run_program(config, ("sshPrivateKey",), program_file=EXAMPLE)


def staged_files(bundle: str) -> dict[str, str]:
    """The files a bundle installs, decoded (bundle.sh.j2 stages each as base64)."""
    return {path.strip("'"): base64.b64decode(body).decode()
            for path, body in re.findall(r"^k8sha_stage (\S+) .*\n([A-Za-z0-9+/=\n]*?)\nK8SHA_FILE$", bundle, re.M)}


def test_one_member_step_per_host_with_its_pinned_key_then_a_health_gate() -> None:
    graph = run()
    steps = {r.name: r for r in graph.of_type(COMMAND)}
    assert set(steps) == {f"{n}-etcd-member" for n in HOSTS} | {"etcd-health"}
    for name, ip in HOSTS.items():
        connection = steps[f"{name}-etcd-member"].inputs["connection"]
        assert (connection["host"], connection["user"], connection["hostKey"]) == (ip, "root", HOST_KEYS[name])
    health = steps["etcd-health"]
    assert health.inputs["connection"]["host"] == HOSTS["etcd-a"]
    assert all(graph.depends_on(health, steps[f"{n}-etcd-member"]) for n in HOSTS)
    assert not any(graph.depends_on(steps[f"{a}-etcd-member"], steps[f"{b}-etcd-member"])
                   for a in HOSTS for b in HOSTS if a != b), "members must start in parallel"


def test_secrets_stay_secret_and_exports_are_the_members() -> None:
    graph = run()
    for step in graph.of_type(COMMAND):
        assert "stdin" in step.secret_inputs and "connection" in step.secret_inputs
        assert {"stdout", "stderr"} <= step.additional_secret_outputs
    assert graph.stack_outputs["endpoints"] == [f"https://{ip}:2379" for ip in HOSTS.values()]
    assert "client" in graph.secret_outputs


def test_each_bundle_configures_this_cluster() -> None:
    graph = run()
    bundle = graph.named("etcd-b-etcd-member").inputs["stdin"]
    assert "export K8SHA_ETCD_NAME=etcd-b" in bundle
    assert "export K8SHA_ETCD_SOURCE=tarball" in bundle and "etcd-v3.6.14-linux-amd64.tar.gz" in bundle
    assert "export K8SHA_ETCD_ENDPOINTS=https://10.0.0.11:2379,https://10.0.0.12:2379,https://10.0.0.13:2379" in bundle
    env = staged_files(bundle)["/etc/etcd/etcd.env"]
    assert "ETCD_INITIAL_CLUSTER_TOKEN=k8s-ha-payments-etcd\n" in env  # keeps two clusters apart
    assert "etcd-a=https://10.0.0.11:2380,etcd-b=https://10.0.0.12:2380,etcd-c=https://10.0.0.13:2380" in env
