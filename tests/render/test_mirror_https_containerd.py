"""An HTTPS image registry mirror as containerd itself reads the hosts.toml files we render: with
the stack's CA named in each host table the pull succeeds; without it (system roots only) the same
pull is refused for an unknown authority, so verification is on and the CA is what makes it pass.

The bundle's images are pushed by serve-bundle's docker-registry (plain HTTP, loopback); a second
docker-registry serves the same storage over TLS with a certificate from a throwaway CA."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from k8s_ha.cli.bundle import make_bundle
from k8s_ha.cli.serve_bundle import BundleServer
from k8s_ha.model.artifacts import ArtifactSettings, images
from k8s_ha.render.registry_mirrors import CERTS_D, mirror_hosts
from tests.render.test_bundle_containerd import CONFIG
from tests.render.test_bundle_registry import free_port
from tests.tools import require_root, require_tool
from tests.unit.test_bundle import VERSIONS, private_source

TLS_REGISTRY = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: {addr}
  tls:
    certificate: {cert}
    key: {key}
"""


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def certificates(ip: str) -> tuple[str, str, str]:
    """(CA certificate, server certificate for `ip`, server key), all PEM, valid for a day."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mirror test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])).issuer_name(ca_name)
              .public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + datetime.timedelta(1))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
              .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return _pem(ca), _pem(server), key_pem


def install_hosts(files: dict[str, str], hosts: Path) -> None:
    """The rendered files under `hosts` instead of /etc/containerd/certs.d, paths inside them too."""
    for path, content in files.items():
        target = hosts / Path(path).relative_to(CERTS_D)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content.replace(CERTS_D, str(hosts)))


@contextmanager
def tls_registry(registry_bin: str, root: Path, addr: str, work: Path, ca: str, cert: str, key: str) -> Iterator[None]:
    """docker-registry serving `root` over TLS on `addr`, until the block ends."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "cert.pem").write_text(cert)
    (work / "key.pem").write_text(key)
    (work / "registry.yml").write_text(TLS_REGISTRY.format(root=root, addr=addr, cert=work / "cert.pem",
                                                           key=work / "key.pem"))
    log = (work / "registry.log").open("wb")
    proc = subprocess.Popen([registry_bin, "serve", str(work / "registry.yml")], stdout=log, stderr=log)
    try:
        context = ssl.create_default_context(cadata=ca)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"https://{addr}/v2/", timeout=5, context=context):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError((work / "registry.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_containerd_trusts_an_https_mirror_by_the_stacks_ca_and_only_by_it(tmp_path: Path) -> None:
    require_root("containerd runs as root")
    containerd = require_tool("containerd", "pulls through the mirror")
    ctr = require_tool("ctr", "containerd's client")
    registry_bin = require_tool("docker-registry", "serves the mirror")
    files, imgs, settings = private_source(tmp_path / "src")
    manifest = make_bundle(VERSIONS, settings, tmp_path / "bundle", str(files), str(imgs))
    plain, mirror = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    ca, cert, key = certificates("127.0.0.1")
    with_ca, roots_only = tmp_path / "certs.d-ca", tmp_path / "certs.d-roots"
    install_hosts(mirror_hosts(ArtifactSettings(imageRegistry=mirror), images(VERSIONS), ca=ca), with_ca)
    install_hosts(mirror_hosts(ArtifactSettings(imageRegistry=mirror), images(VERSIONS)), roots_only)
    by_registry: dict[str, str] = {}
    for entry in manifest["images"]:
        by_registry.setdefault(entry["ref"].split("/", 1)[0], entry["ref"])
    sock = str(tmp_path / "c.sock")
    (tmp_path / "config.toml").write_text(CONFIG.format(sock=sock))
    with (BundleServer(tmp_path / "bundle", "127.0.0.1:0", plain, tmp_path / "state", registry_bin),
          tls_registry(registry_bin, tmp_path / "state" / "registry", mirror, tmp_path / "tls", ca, cert, key)):
        log = (tmp_path / "containerd.log").open("wb")
        daemon = subprocess.Popen(
            [containerd, "--config", str(tmp_path / "config.toml"), "--root", str(tmp_path / "root"),
             "--state", str(tmp_path / "run")], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(sock) and time.monotonic() < deadline:
                time.sleep(0.2)
            base = [ctr, "--address", sock, "--namespace", "k8s.io"]

            def pull(ref: str, hosts: Path) -> subprocess.CompletedProcess[str]:
                return subprocess.run([*base, "images", "pull", "--hosts-dir", str(hosts), ref],
                                      capture_output=True, text=True, timeout=120, check=False)

            for ref in by_registry.values():
                refused = pull(ref, roots_only)
                assert refused.returncode != 0
                assert "certificate signed by unknown authority" in refused.stderr, refused.stderr[-2000:]
                done = pull(ref, with_ca)
                assert done.returncode == 0, done.stderr + (tmp_path / "containerd.log").read_text()[-2000:]
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)

