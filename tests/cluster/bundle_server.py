"""The lab bundle served on the operator's address inside the lab namespace, by the product's own
`serve-bundle` (it verifies the bundle first, serves files over HTTP and pushes every image into
Debian's docker-registry): the guests reach it on the bridge and have no other route out.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from tests.cluster.config import FILES_PORT, REGISTRY_PORT
from tests.guests.hypervisors import LabHypervisors

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 900  # verifying and pushing ~1 GiB of layouts


class LabBundleServer:
    def __init__(self, hvs: LabHypervisors, bundle: Path | Sequence[Path], state: Path) -> None:
        self.hvs, self.state = hvs, state
        self.bundles = [bundle] if isinstance(bundle, Path) else list(bundle)
        self.registry = f"{hvs.client_ip}:{REGISTRY_PORT}"
        self.files_url = f"http://{hvs.client_ip}:{FILES_PORT}"
        self.process: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self.started_s = 0.0

    def __enter__(self) -> LabBundleServer:
        started = time.monotonic()
        self.process = subprocess.Popen(
            self.hvs.netns_argv([sys.executable, "-m", "k8s_ha", "serve-bundle", *map(str, self.bundles),
                                 "--listen", f"{self.hvs.client_ip}:{FILES_PORT}",
                                 "--registry-listen", self.registry, "--state", str(self.state)]),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready = threading.Event()

        def read() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                self.output.append(line.rstrip())
                if line.startswith("images:"):
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        while not ready.wait(1):
            if self.process.poll() is not None or time.monotonic() - started > START_TIMEOUT_S:
                self.__exit__(None, None, None)
                raise RuntimeError("serve-bundle did not start: " + "\n".join(self.output[-20:]))
        self.started_s = round(time.monotonic() - started, 1)
        return self

    def push(self, layout: Path, path: str) -> None:
        """One more OCI layout into the registry (a test image that is not a stack image)."""
        code = ("import sys; from pathlib import Path; from k8s_ha.cli.serve_bundle import push_layout; "
                "push_layout(Path(sys.argv[1]), sys.argv[2], sys.argv[3])")
        subprocess.run(self.hvs.netns_argv([sys.executable, "-c", code, str(layout), self.registry, path]),
                       cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
