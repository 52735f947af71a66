"""`serve-bundle`: serve a bundle so a stack pointed at it installs with no route out.

Files go out over HTTP in the files-repo layout (`artifacts.filesRepo: http://HOST:PORT`), and the
images from Debian's docker-registry (distribution 2.8) loaded from the bundle's OCI layouts
(`artifacts.imageRegistry: HOST:PORT`). The bundle is verified first: a missing or corrupt entry is
refused by name before anything is served. The push is a few plain registry API calls, so serving
needs no tool beyond docker-registry.

Several bundles can be served at once (an upgrade needs the release it starts from and the one it
goes to): a file or an image is looked up in each in turn, and two bundles that disagree about the
same file or image are refused before anything is served.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from k8s_ha.cli.bundle import BundleError, verify_bundle
from k8s_ha.render.templating import render

START_TIMEOUT_S = 30.0
REGISTRY_BIN = "docker-registry"


class _FilesHandler(http.server.SimpleHTTPRequestHandler):
    """Files from the first of `roots` that has them."""

    def __init__(self, *args: Any, roots: Sequence[str], **kwargs: Any) -> None:
        self.roots = roots
        super().__init__(*args, directory=roots[0], **kwargs)

    def translate_path(self, path: str) -> str:
        for root in self.roots:
            self.directory = root
            candidate = super().translate_path(path)
            if os.path.exists(candidate):
                return candidate
        self.directory = self.roots[0]
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:
        return


def merged_manifest(bundles: Sequence[Path]) -> dict[str, Any]:
    """Every bundle verified, and their files and images as one list each (an entry both carry is
    listed once); refused when two bundles hold different content under one path or image name."""
    files: dict[str, dict[str, Any]] = {}
    images: dict[str, dict[str, Any]] = {}
    for bundle in bundles:
        manifest = verify_bundle(bundle)
        for key, seen, entries in (("sha256", files, manifest["files"]), ("digest", images, manifest["images"])):
            for entry in entries:
                other = seen.setdefault(entry["path"], {**entry, "bundle": bundle})
                if other[key] != entry[key]:
                    raise BundleError(f"{other['bundle']} and {bundle} hold different {entry['path']} "
                                      f"({other[key][:19]} and {entry[key][:19]}); serve them one at a time")
    return {"files": list(files.values()), "images": list(images.values())}


def _request(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None
             ) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def push_layout(layout: Path, registry: str, path: str) -> str:
    """Push a one-image OCI layout to `registry` as `path` (name:tag); returns the manifest digest."""
    name, tag = path.rsplit(":", 1)
    base = f"http://{registry}/v2/{name}"
    index = json.loads((layout / "index.json").read_text())
    desc = index["manifests"][0]
    blobs = layout / "blobs" / "sha256"
    manifest_bytes = (blobs / desc["digest"].removeprefix("sha256:")).read_bytes()
    manifest = json.loads(manifest_bytes)
    for blob in [manifest["config"], *manifest["layers"]]:
        digest = blob["digest"]
        status, _ = _request("HEAD", f"{base}/blobs/{digest}")
        if status == 200:
            continue
        status, headers = _request("POST", f"{base}/blobs/uploads/")
        location = headers.get("Location", "")
        if status != 202 or not location:
            raise BundleError(f"{path}: registry refused an upload ({status})")
        if location.startswith("/"):
            location = f"http://{registry}{location}"
        sep = "&" if "?" in location else "?"
        data = (blobs / digest.removeprefix("sha256:")).read_bytes()
        status, _ = _request("PUT", f"{location}{sep}digest={digest}", data,
                             {"Content-Type": "application/octet-stream"})
        if status != 201:
            raise BundleError(f"{path}: registry refused blob {digest[:19]} ({status})")
    media = manifest.get("mediaType", desc.get("mediaType", "application/vnd.oci.image.manifest.v1+json"))
    status, _ = _request("PUT", f"{base}/manifests/{tag}", manifest_bytes, {"Content-Type": media})
    if status != 201:
        raise BundleError(f"{path}: registry refused the manifest ({status})")
    return str(desc["digest"])


def _wait_for(url: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BundleError(f"docker-registry exited with {proc.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise BundleError(f"nothing answered at {url} within {START_TIMEOUT_S:.0f} s")


def _split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise BundleError(f"{listen!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


class BundleServer:
    """The bundle's files over HTTP and its images from a docker-registry, until `stop()`."""

    def __init__(self, bundle: Path | Sequence[Path], listen: str, registry_listen: str, state: Path,
                 registry_bin: str = REGISTRY_BIN) -> None:
        self.bundles = (bundle,) if isinstance(bundle, Path) else tuple(bundle)
        self.listen, self.registry, self.state = listen, registry_listen, state
        self.registry_bin = registry_bin
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def files_url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> dict[str, Any]:
        manifest = merged_manifest(self.bundles)
        host, port = _split(self.listen)
        handler = functools.partial(_FilesHandler, roots=[str(b / "files") for b in self.bundles])
        self._httpd = http.server.ThreadingHTTPServer((host, port), handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        if shutil.which(self.registry_bin) is None:
            self.stop()
            raise BundleError(f"{self.registry_bin} not found: install Debian's docker-registry package")
        self.state.mkdir(parents=True, exist_ok=True)
        config = self.state / "registry.yml"
        config.write_text(render("bundle/registry.yml.j2", root=str(self.state / "registry"), addr=self.registry))
        log = (self.state / "registry.log").open("ab")
        self._proc = subprocess.Popen([self.registry_bin, "serve", str(config)], stdout=log, stderr=log)
        try:
            _wait_for(f"http://{self.registry}/v2/", self._proc)
            for entry in manifest["images"]:
                push_layout(entry["bundle"] / entry["layout"], self.registry, entry["path"])
        except BaseException:
            self.stop()
            raise
        return manifest

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def __enter__(self) -> BundleServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
