"""`bundle`, `verify-bundle`, `serve-bundle`: the offline artifact bundle (docs/artifacts.md).

Exit codes: 0 done, 2 invalid stack, 1 a refused file or image (named) or usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path

from k8s_ha.cli.bundle import BundleError, Tools, components_of, make_bundle, verify_bundle, versions_of
from k8s_ha.cli.serve_bundle import BundleServer
from k8s_ha.model.artifacts import ArtifactError
from k8s_ha.model.errors import SpecError
from k8s_ha.placement.plan import load_plan

COMMANDS = ("bundle", "verify-bundle", "serve-bundle")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m k8s_ha", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("bundle", help="collect every file and image a stack needs into --out")
    make.add_argument("--stack-file", type=Path, required=True)
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--files-source", help="base URL or directory laid out as <host>/<path>")
    make.add_argument("--images-source", help="registry HOST:PORT or directory of OCI layouts")
    make.add_argument("--crane", default="crane", help="crane binary, for pulling from a registry")
    check = sub.add_parser("verify-bundle", help="re-check every file and image against manifest.json")
    check.add_argument("bundle", type=Path)
    serve = sub.add_parser("serve-bundle", help="serve files over HTTP and images from docker-registry")
    serve.add_argument("bundle", type=Path)
    serve.add_argument("--listen", default="127.0.0.1:8080", help="files HTTP HOST:PORT")
    serve.add_argument("--registry-listen", default="127.0.0.1:5000", help="registry HOST:PORT")
    serve.add_argument("--state", type=Path, help="registry storage (default: BUNDLE/.registry)")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "bundle":
            try:
                spec = load_plan(args.stack_file).spec
            except SpecError as exc:
                print(f"{args.stack_file}: {exc.render()}", file=sys.stderr)
                return 2
            manifest = make_bundle(versions_of(spec), spec.artifacts, args.out, args.files_source,
                                   args.images_source, Tools(crane=args.crane), components_of(spec))
            size = sum(e["size"] for e in manifest["files"]) + sum(e["size"] for e in manifest["images"])
            print(f"{args.out}: {len(manifest['files'])} files, {len(manifest['images'])} images, "
                  f"{size / 2**20:.1f} MiB")
            return 0
        if args.command == "verify-bundle":
            manifest = verify_bundle(args.bundle)
            print(f"{args.bundle}: {len(manifest['files'])} files and {len(manifest['images'])} images verified")
            return 0
        server = BundleServer(args.bundle, args.listen, args.registry_listen,
                              args.state or args.bundle / ".registry")
        server.start()
        print(f"files: {server.files_url}  (artifacts.filesRepo)\n"
              f"images: {args.registry_listen}  (artifacts.imageRegistry)", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        server.stop()
        return 0
    except (BundleError, ArtifactError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
