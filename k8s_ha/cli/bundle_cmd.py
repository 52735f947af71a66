"""`bundle`, `verify-bundle`, `serve-bundle`: the offline artifact bundle (docs/artifacts.md).

Exit codes as everywhere (k8s_ha.cli.exits): 2 an invalid stack, 1 a refused file or image (named),
3 no docker-registry to serve images from.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from k8s_ha.cli import exits
from k8s_ha.cli.bundle import STACK_PINS, BundleError, Tools, components_of, make_bundle, verify_bundle, versions_of
from k8s_ha.cli.serve_bundle import REGISTRY_BIN, BundleServer
from k8s_ha.model.artifacts import ArtifactError
from k8s_ha.model.errors import SpecError
from k8s_ha.placement.plan import load_plan

COMMANDS = ("bundle", "verify-bundle", "serve-bundle")


def add_commands(sub: Any) -> None:
    """The three bundle subcommands on the one parser of `python -m k8s_ha` (`sub`: its subparsers)."""
    make = sub.add_parser("bundle", help="collect every file and image a stack needs into --out",
                          description="Collect every release file and container image the stack needs, "
                                      "checked against its pinned sha256, into one directory with a manifest.")
    make.add_argument("--stack-file", type=Path, required=True, help="the stack file (Pulumi.<stack>.yaml)")
    make.add_argument("--out", type=Path, required=True, help="the bundle directory to write")
    make.add_argument("--files-source", help="where release files come from: a base URL or a directory laid "
                                             "out as <host>/<path> (default: the upstream URLs)")
    make.add_argument("--images-source", help="where images come from: a registry HOST:PORT or a directory of "
                                              "OCI layouts (default: the upstream registries)")
    make.add_argument("--crane", default="crane", help="the crane binary that pulls images from a registry "
                                                       "(default: crane on PATH)")
    make.set_defaults(handler=run)
    check = sub.add_parser("verify-bundle", help="re-check every file and image against manifest.json",
                           description="Re-check every file and image of a bundle against its manifest.json.")
    check.add_argument("bundle", type=Path, help="the bundle directory (holds manifest.json)")
    check.set_defaults(handler=run)
    serve = sub.add_parser("serve-bundle", help="serve files over HTTP and images from docker-registry",
                           description="Verify one bundle or several (during an upgrade: the release it starts "
                                       "from and the one it goes to), then serve their files over HTTP and "
                                       "their images from Debian's docker-registry until interrupted.")
    serve.add_argument("bundle", type=Path, nargs="+", help="the bundle directories (each holds manifest.json)")
    serve.add_argument("--listen", default="127.0.0.1:8080",
                       help="HOST:PORT of the files server, for artifacts.filesRepo (default 127.0.0.1:8080)")
    serve.add_argument("--registry-listen", default="127.0.0.1:5000",
                       help="HOST:PORT of the registry, for artifacts.imageRegistry (default 127.0.0.1:5000)")
    serve.add_argument("--state", type=Path,
                       help="the registry's storage directory (default: .registry in the first bundle)")
    serve.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "bundle":
            return _bundle(args)
        if args.command == "verify-bundle":
            manifest = verify_bundle(args.bundle)
            print(f"{args.bundle}: {len(manifest['files'])} files and {len(manifest['images'])} images verified")
            return exits.OK
        return _serve(args)
    except (BundleError, ArtifactError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return exits.FAILED


def _bundle(args: argparse.Namespace) -> int:
    try:
        spec = load_plan(args.stack_file).spec
    except SpecError as exc:
        print(f"{args.stack_file}: {exc.render()}", file=sys.stderr)
        return exits.BAD_INPUT
    manifest = make_bundle(versions_of(spec), spec.artifacts, args.out, args.files_source,
                           args.images_source, Tools(crane=args.crane), components_of(spec))
    size = sum(e["size"] for e in manifest["files"]) + sum(e["size"] for e in manifest["images"])
    print(f"{args.out}: {len(manifest['files'])} files, {len(manifest['images'])} images, "
          f"{size / 2**20:.1f} MiB")
    print(f"pins for the stack (artifacts.checksums, artifacts.imageDigests): {args.out / STACK_PINS}")
    return exits.OK


def _serve(args: argparse.Namespace) -> int:
    if shutil.which(REGISTRY_BIN) is None:
        print(f"serve-bundle: {REGISTRY_BIN} not found: install Debian's docker-registry package",
              file=sys.stderr)
        return exits.MISSING
    server = BundleServer(args.bundle, args.listen, args.registry_listen, args.state or args.bundle[0] / ".registry")
    server.start()
    print(f"files: {server.files_url}  (artifacts.filesRepo)\n"
          f"images: {args.registry_listen}  (artifacts.imageRegistry, with imageRegistryPlainHttp: true)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.stop()
    return exits.OK
