#!/usr/bin/python3
"""Probes the drills run from the lab's client namespace (the operator's workstation).

Stdlib only: it runs as `ip netns exec CLIENT /usr/bin/python3 tests/lab/probe.py MODE ...`, never
in the machine's own network namespace (lab addresses are reachable only from the client
namespace). Every mode is bounded by --duration (0: one sample) and prints one line per sample,
flushed at once. Times are CLOCK_MONOTONIC, the same clock in every process on this machine, so
the test process can line samples up with the instant it injected a fault.

Modes and their lines:
  tcp      a TCP connect to --target every --interval; attempts overlap (each has --timeout), so a
           black-holed SYN does not hide the moment the address answers again
           -> "START END 1" or "START END 0 ERROR"
  https    TLS verified against --ca (the name is not checked: a stand-in's certificate names its
           backend, not the VIP), optionally with a client certificate (--cert/--key), then GET
           --path -> "START END {json}" (ok, status, body, cn, error); one at a time, or with
           --overlap a new one every --interval while earlier ones wait (at most 20 in flight)
  stats    HAProxy's CSV stats page, basic auth      -> "START END {json}": {server: status}
  etcdput  `etcdctl put` with client-certificate auth, a new one every --interval (they overlap,
           so one stuck in an election does not hide the next) -> "START END RC last-stderr-line"
  etcdstatus  `etcdctl endpoint status`              -> "START END {json}": {endpoint: [leader, term]}
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import json
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

_EMIT = threading.Lock()


def emit(start: float, text: str) -> None:
    with _EMIT:
        sys.stdout.write(f"{start:.4f} {time.monotonic():.4f} {text}\n")
        sys.stdout.flush()


def common_name(cert: dict[str, Any]) -> str:
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


def https_once(args: argparse.Namespace, method: str = "GET", body: bytes = b"") -> str:
    address, _, port = args.target.rpartition(":")
    context = ssl.create_default_context(cafile=args.ca)
    context.check_hostname = False  # the chain is verified against the cluster CA
    if args.cert:  # client-certificate auth (the cluster tier reads the API as the stack's admin)
        context.load_cert_chain(args.cert, args.key)
    result: dict[str, object] = {"ok": False}
    try:
        with socket.create_connection((address, int(port)), timeout=args.timeout) as raw, \
                context.wrap_socket(raw) as tls:
            result["cn"] = common_name(tls.getpeercert() or {})
            head = f"{method} {args.path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n"
            if body:
                head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            tls.sendall(head.encode() + b"\r\n" + body)
            data = b""
            while chunk := tls.recv(4096):
                data += chunk
        reply, _, text = data.decode(errors="replace").partition("\r\n\r\n")
        status = int(reply.split()[1]) if reply.startswith("HTTP/") else 0
        result.update(status=status, body=text, ok=status in (200, 201))
    except (OSError, ValueError, IndexError) as error:
        result["error"] = f"{type(error).__name__}: {error}"
    return json.dumps(result)


def configmap_once(args: argparse.Namespace) -> str:
    """Create the next numbered ConfigMap (POST to --path, a namespace's configmaps); the reply
    names it, so a writer's acknowledged objects can be read back afterwards."""
    args.sequence = getattr(args, "sequence", 0) + 1
    name = f"{args.key_name}-{args.sequence:06d}"
    document = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"n": str(args.sequence)}}
    result = json.loads(https_once(args, "POST", json.dumps(document).encode()))
    result.pop("body", None)
    return json.dumps({**result, "name": name})


def stats_once(args: argparse.Namespace) -> str:
    with open(args.password_file) as f:
        token = base64.b64encode(f"{args.user}:{f.read().strip()}".encode()).decode()
    request = urllib.request.Request(args.url, headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            lines = response.read().decode().splitlines()
    except OSError as error:
        return json.dumps({"error": f"{type(error).__name__}: {error}"})
    return json.dumps(server_status(lines, args.backend))


def server_status(lines: list[str], backend: str) -> dict[str, str]:
    """{server: status} of one backend, from HAProxy's CSV stats (the stats page or `show stat`)."""
    header = lines[0].lstrip("# ").split(",")
    out = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND"):
            out[row["svname"]] = row.get("status", "")
    return out


def etcdput(args: argparse.Namespace) -> None:
    """Overlapping `etcdctl put`s: a new one every interval (at most 20 in flight), each bounded."""
    base = [args.etcdctl, f"--endpoints={args.endpoints}", f"--cacert={args.cacert}",
            f"--dial-timeout={args.timeout:g}s", f"--command-timeout={args.timeout:g}s"]
    if args.cert:
        base += [f"--cert={args.cert}", f"--key={args.key}"]
    running: list[tuple[float, str, subprocess.Popen[str]]] = []
    sequence = 0
    next_start = time.monotonic()
    deadline = next_start + args.duration
    try:
        while running or next_start <= deadline:
            now = time.monotonic()
            if next_start <= now and next_start <= deadline and len(running) < 20:
                sequence += 1
                key = f"{args.key_name}/{sequence:06d}" if args.numbered else args.key_name
                argv = [*base, "put", key, f"written-at-{now:.4f}"]
                env = {"PATH": "/usr/bin:/bin", "ETCDCTL_API": "3"}
                running.append((now, key, subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                                           text=True, env=env)))
                next_start = now + args.interval if args.duration > 0 else float("inf")
            for item in list(running):
                start, key, process = item
                named = f" key={key}" if args.numbered else ""
                if process.poll() is not None:
                    error = (process.stderr.read() if process.stderr else "").strip().splitlines() or [""]
                    emit(start, f"{process.returncode}{named} {error[-1]}")
                elif now - start > args.timeout * 3 + 2:
                    process.kill()
                    process.wait()
                    emit(start, f"124{named} etcdctl did not return")
                else:
                    continue
                running.remove(item)
            time.sleep(0.005)
    finally:
        for _start, _key, process in running:
            process.kill()


def etcdstatus_once(args: argparse.Namespace) -> str:
    """{endpoint: [leader id, raft term]} of every endpoint that answered `endpoint status`."""
    argv = ["etcdctl", f"--endpoints={args.endpoints}", f"--cacert={args.cacert}", f"--cert={args.cert}",
            f"--key={args.key}", f"--dial-timeout={args.timeout:g}s", f"--command-timeout={args.timeout:g}s",
            "endpoint", "status", "-w", "json"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=args.timeout * 3 + 2,
                              env={"PATH": "/usr/bin:/bin", "ETCDCTL_API": "3"})
        rows = json.loads(done.stdout or "[]")
    except (subprocess.TimeoutExpired, json.JSONDecodeError):
        rows = []
    return json.dumps({row["Endpoint"]: [row["Status"]["leader"], row["Status"]["raftTerm"]] for row in rows})


def sequential(args: argparse.Namespace, once: Callable[[argparse.Namespace], str]) -> None:
    deadline = time.monotonic() + args.duration
    while True:
        start = time.monotonic()
        try:
            text = once(args)
        except Exception as error:  # a probe reports, it does not die
            text = json.dumps({"error": f"{type(error).__name__}: {error}"})
        emit(start, text)
        if start >= deadline:
            return
        time.sleep(max(0.0, args.interval - (time.monotonic() - start)))


def overlapping(args: argparse.Namespace, once: Callable[[argparse.Namespace], str]) -> None:
    """A new request every interval whether or not the last one answered (at most 20 in flight,
    each bounded by --timeout), like `tcp` and `etcdput`: a request stuck on a dead path does not
    hide the moment the service answers again."""
    def timed() -> None:
        start = time.monotonic()
        try:
            text = once(args)
        except Exception as error:  # a probe reports, it does not die
            text = json.dumps({"error": f"{type(error).__name__}: {error}"})
        emit(start, text)

    deadline = time.monotonic() + args.duration
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        while True:
            start = time.monotonic()
            pool.submit(timed)
            if start >= deadline:
                return
            time.sleep(max(0.0, args.interval - (time.monotonic() - start)))


def tcp(args: argparse.Namespace) -> None:
    """Overlapping non-blocking connects: a new attempt every interval, each with its own timeout."""
    address, _, port = args.target.rpartition(":")
    selector = selectors.DefaultSelector()
    pending: dict[socket.socket, float] = {}
    next_start = time.monotonic()
    deadline = next_start + args.duration
    while pending or next_start <= deadline:
        now = time.monotonic()
        if next_start <= now and next_start <= deadline:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex((address, int(port)))
            pending[sock] = now
            selector.register(sock, selectors.EVENT_WRITE)
            next_start = now + args.interval if args.duration > 0 else float("inf")
        wait = max(0.0, min([next_start - now, *(s + args.timeout - now for s in pending.values())]))
        for key, _ in selector.select(timeout=min(wait, args.interval)):
            sock = key.fileobj  # type: ignore[assignment]
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            emit(pending.pop(sock), "1" if error == 0 else f"0 errno{error}")
            selector.unregister(sock)
            sock.close()
        now = time.monotonic()
        for sock, start in list(pending.items()):
            if now - start >= args.timeout:
                emit(start, "0 timeout")
                del pending[sock]
                selector.unregister(sock)
                sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["tcp", "https", "stats", "etcdput", "etcdstatus", "configmap"])
    parser.add_argument("--target", default="", help="ADDR:PORT (tcp, https)")
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=0.5)
    parser.add_argument("--duration", type=float, default=0.0, help="seconds; 0 = one sample")
    parser.add_argument("--overlap", action="store_true", help="https, configmap, stats: a new request every "
                        "--interval even while earlier ones are unanswered")
    parser.add_argument("--path", default="/readyz")
    parser.add_argument("--ca", help="CA file (https)")
    parser.add_argument("--url", help="stats CSV URL")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password-file")
    parser.add_argument("--backend", default="kube-apiserver")
    parser.add_argument("--endpoints")
    parser.add_argument("--cacert")
    parser.add_argument("--cert", default="")
    parser.add_argument("--key", default="")
    parser.add_argument("--key-name", default="/k8s-ha-lab/drill")
    parser.add_argument("--numbered", action="store_true", help="etcdput: a new key per write (KEY/000001 ...)")
    parser.add_argument("--etcdctl", default="etcdctl", help="the etcdctl binary (etcdput)")
    args = parser.parse_args()
    if args.mode == "tcp":
        tcp(args)
    elif args.mode == "etcdput":
        etcdput(args)
    else:
        once = {"https": https_once, "stats": stats_once, "etcdstatus": etcdstatus_once,
                "configmap": configmap_once}[args.mode]
        (overlapping if args.overlap else sequential)(args, once)


def _terminate(_signum: int, _frame: object) -> None:
    raise SystemExit(0)  # unwinds through `finally`, so etcdput's children are killed


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        main()
