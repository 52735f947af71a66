"""Nothing acknowledged may be lost: writers that create a numbered object every 100 ms during a
drill - a ConfigMap through the VIP (authenticated as the stack's admin) and a key in etcd - and
afterwards read every object back. A failed write is counted and reported, never hidden; an
acknowledged write that cannot be read back is a loss."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.cluster.cluster import ClusterSteps
from tests.guests.drills import PROBE, Lines, etcdctl, samples

NAMESPACE = "k8s-ha-drill-writes"
ETCD_PREFIX = "/k8s-ha-drill-writes"
INTERVAL_S = 0.1


class NumberedWriters:
    """A context manager: both writers run from the operator's workstation while it is open."""

    def __init__(self, c: ClusterSteps, admin: dict[str, Path], etcdctl_bin: Path, name: str,
                 duration: float = 1800) -> None:
        self.c, self.name = c, name
        c.kubectl("create", "namespace", NAMESPACE, check=False)
        self.api = Lines(c.netns_argv([
            "/usr/bin/python3", str(PROBE), "configmap", "--target", f"{c.vip}:6443",
            "--path", f"/api/v1/namespaces/{NAMESPACE}/configmaps", "--key-name", name,
            "--ca", str(admin["ca"]), "--cert", str(admin["cert"]), "--key", str(admin["key"]),
            "--interval", str(INTERVAL_S), "--timeout", "2", "--duration", f"{duration:g}"]))
        self.etcd = Lines(c.netns_argv([
            "/usr/bin/python3", str(PROBE), "etcdput", "--numbered", "--etcdctl", str(etcdctl_bin),
            "--endpoints", ",".join(c.etcd_endpoints()), "--cacert", str(c.client_file("etcd-ca.crt")),
            "--cert", str(c.client_file("etcd-client.crt")), "--key", str(c.client_file("etcd-client.key")),
            "--key-name", f"{ETCD_PREFIX}/{name}", "--interval", str(INTERVAL_S), "--timeout", "2",
            "--duration", f"{duration:g}"]))

    def __enter__(self) -> NumberedWriters:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.api.stop()
        self.etcd.stop()

    def report(self) -> dict[str, Any]:
        """Stop both writers, read everything back: acknowledged, failed and lost writes of each."""
        self.api.stop()
        self.etcd.stop()
        api_rows = [json.loads(text) for _s, _e, text in samples(self.api) if text.startswith("{")]
        api_ok = {r["name"] for r in api_rows if r.get("ok")}
        listed = self.c.kubectl_json("get", "configmaps", "-n", NAMESPACE)["items"]
        present = {i["metadata"]["name"] for i in listed}
        etcd_rows = [text for _s, _e, text in samples(self.etcd)]
        etcd_ok = {m.group(1) for t in etcd_rows if t.startswith("0 ") and (m := re.search(r"key=(\S+)", t))}
        done = etcdctl(self.c, "get", "--prefix", "--keys-only", f"{ETCD_PREFIX}/{self.name}/", timeout=10)
        stored = {line for line in done.stdout.splitlines() if line.strip()}
        return {
            "configmaps_through_vip": {"attempted": len(api_rows), "acknowledged": len(api_ok),
                                       "failed": len(api_rows) - len(api_ok),
                                       "lost": sorted(api_ok - present)},
            "etcd_keys": {"attempted": len(etcd_rows), "acknowledged": len(etcd_ok),
                          "failed": len(etcd_rows) - len(etcd_ok), "lost": sorted(etcd_ok - stored),
                          "read_back_exit": done.returncode},
        }
