"""The guests' key material is real and consistent (no root, no libvirt: runs in the unit tier).

The guests tier boots what the program records; that only works if the host key cloud-init
installs is the one every connection pins, the program's SSH key is the one cloud-init
authorizes, and the certificates chain to the recorded CAs. RealMaterialMocks must guarantee it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.guests.config import BOOTED, ETCD_NAMES, stack_config
from tests.guests.real_mocks import RealMaterialMocks
from tests.unit.harness import Graph, run_program


@pytest.fixture(scope="module")
def recorded() -> tuple[Graph, RealMaterialMocks]:
    mocks = RealMaterialMocks()
    uris = {n: f"qemu:///system?socket=/run/k8sguests-test/{n}/libvirt-sock" for n in ("hv-a", "hv-b")}
    graph = run_program(stack_config(uris, "10.212.0.1", Path("/images/base.qcow2"), "qemu"), mocks=mocks)
    return graph, mocks


def _openssh_public(private_pem: str) -> str:
    key = serialization.load_ssh_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def test_cloud_init_installs_the_pinned_host_key(recorded: tuple[Graph, RealMaterialMocks]) -> None:
    graph, _ = recorded
    for name in BOOTED:
        user_data = yaml.safe_load(graph.named(f"{name}-cloudinit").inputs["userData"])
        installed = _openssh_public(user_data["ssh_keys"]["ed25519_private"])
        assert installed.split()[:2] == user_data["ssh_keys"]["ed25519_public"].split()[:2]
        commands = [c for c in graph.of_type("command:remote:Command") if c.name.startswith(f"{name}-")]
        assert commands
        for command in commands:
            assert command.inputs["connection"]["hostKey"].split()[:2] == installed.split()[:2]


def test_cloud_init_authorizes_the_programs_key(recorded: tuple[Graph, RealMaterialMocks]) -> None:
    graph, _ = recorded
    connection = graph.named("lb1-ready").inputs["connection"]
    program_key = _openssh_public(connection["privateKey"]).split()[:2]
    user_data = yaml.safe_load(graph.named("lb1-cloudinit").inputs["userData"])
    (user,) = user_data["users"]
    assert user["name"] == connection["user"]
    assert program_key in [k.split()[:2] for k in user["ssh_authorized_keys"]]


def test_etcd_certificates_chain_to_the_etcd_ca(recorded: tuple[Graph, RealMaterialMocks]) -> None:
    _, mocks = recorded
    ca = x509.load_pem_x509_certificate(mocks.outputs["etcd-ca-cert"]["certPem"].encode())
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for name in ETCD_NAMES:
        cert = x509.load_pem_x509_certificate(mocks.outputs[f"etcd-{name}-peer-cert"]["certPem"].encode())
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert name in sans.get_values_for_type(x509.DNSName)
        key = serialization.load_pem_private_key(mocks.outputs[f"etcd-{name}-peer-key"]["privateKeyPem"].encode(),
                                                 password=None)
        assert key.public_key() == cert.public_key()
