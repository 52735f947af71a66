#!/usr/bin/python3
"""A STAND-IN for kube-apiserver, for the k8s-ha lab ONLY. It is not Kubernetes.

It serves what HAProxy's health check of an apiserver looks at, and nothing more: HTTPS on
IP:6443 with a serving certificate signed by the cluster CA, `GET /readyz` (and /livez,
/healthz) -> 200 "ok"; everything else -> 404. The lab runs it on each control-plane host as a
shim unit (tests/lab/stack.py), so that the load-balancer drills can kill and start "an
apiserver" without kubeadm, a container runtime or images. Stdlib only (python3 on the host).

Usage: standin_apiserver.py --bind IP --port 6443 --cert FILE --key FILE
"""

from __future__ import annotations

import argparse
import http.server
import socket
import ssl
import sys

HEALTH_PATHS = ("/readyz", "/livez", "/healthz")


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "k8s-ha-lab-standin-apiserver"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        status, body = (200, b"ok") if path in HEALTH_PATHS else (404, b"not served by the stand-in\n")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: HAProxy checks every second."""


class TlsServer(http.server.ThreadingHTTPServer):
    """Accepts plain TCP and does the TLS handshake in the request thread, so a client that
    connects and never speaks TLS (a TCP probe) cannot stall the accept loop."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(address, Handler)

    def finish_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        request.settimeout(10)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return  # a failed handshake (HAProxy's TCP-level probes, scanners): nothing to serve
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="kube-apiserver STAND-IN (k8s-ha lab only)")
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, default=6443)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(args.cert, args.key)
    server = TlsServer((args.bind, args.port), context)
    print(f"kube-apiserver STAND-IN serving https://{args.bind}:{args.port}/readyz", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
