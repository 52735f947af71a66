"""Mocks whose pulumi-tls and pulumi-random outputs are real, so the recorded graph boots guests.

tests/unit/harness.py's mocks return fake PEMs: enough to check the graph, useless to a guest
whose sshd must present the pinned key, or an etcd that must verify its peers. These mocks do what
the two providers do, from the same inputs: PrivateKey makes a key of the asked algorithm,
SelfSignedCert / CertRequest / LocallySignedCert build real X.509 objects with the subject, SANs,
CA flag, usages and validity the program asked for, and the random resources draw real secrets.
Every later resource then records real material in its inputs (cloud-init's host key, the
connections' pinned `hostKey`, the bundles' certificates) - consistent by construction.

Certificates report `validityEndTime` and are issued again, as pulumi-tls replaces them, when a
later run finds one inside its `earlyRenewalHours` (judged, as the provider does, from the end time
the state holds). `age_certificates` moves those recorded end times back, which is how a test makes
a cluster's certificates due without waiting a year: the certificates on the nodes stay as issued.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import string
from typing import Any

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.unit.harness import Mocks, _unwrap

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
CURVES: dict[str, ec.EllipticCurve] = {"P224": ec.SECP224R1(), "P256": ec.SECP256R1(), "P384": ec.SECP384R1(),
                                       "P521": ec.SECP521R1()}
CERTIFICATES = ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert")
EXTENDED_USES = {"server_auth": ExtendedKeyUsageOID.SERVER_AUTH, "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH}


def _new_key(inputs: dict[str, Any]) -> PrivateKey:
    algorithm = str(inputs.get("algorithm", "RSA")).upper()
    if algorithm == "ECDSA":
        return ec.generate_private_key(CURVES[str(inputs.get("ecdsaCurve", "P224"))])
    if algorithm == "ED25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=int(inputs.get("rsaBits", 2048)))


def _key_outputs(key: PrivateKey) -> dict[str, str]:
    """pulumi-tls's shapes: PKCS#1 for RSA, SEC1 for ECDSA, PKCS#8 for ED25519; OpenSSH forms."""
    traditional = isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if traditional else serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    public = key.public_key()
    return {
        "privateKeyPem": key.private_bytes(serialization.Encoding.PEM, fmt, none).decode(),
        "privateKeyPemPkcs8": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                none).decode(),
        "privateKeyOpenssh": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                               none).decode(),
        "publicKeyPem": public.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "publicKeyOpenssh": public.public_bytes(serialization.Encoding.OpenSSH,
                                                serialization.PublicFormat.OpenSSH).decode() + "\n",
    }


def _load_key(pem: str) -> Any:
    return serialization.load_pem_private_key(pem.encode(), password=None)


def _subject(inputs: dict[str, Any]) -> x509.Name:
    subject = inputs.get("subject") or {}
    attrs = []
    if subject.get("commonName"):
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, subject["commonName"]))
    if subject.get("organization"):
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject["organization"]))
    return x509.Name(attrs)


def _sans(inputs: dict[str, Any]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(i)) for i in inputs.get("ipAddresses") or []]
    return names + [x509.DNSName(d) for d in inputs.get("dnsNames") or []]


def _certificate(inputs: dict[str, Any], subject: x509.Name, public_key: Any, issuer: x509.Name, signer: Any,
                 sans: list[x509.GeneralName], is_ca: bool) -> str:
    now = dt.datetime.now(dt.UTC)
    uses = set(inputs.get("allowedUses") or [])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(hours=int(inputs.get("validityPeriodHours", 24))))
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature="digital_signature" in uses, content_commitment=False,
                   key_encipherment="key_encipherment" in uses, data_encipherment=False, key_agreement=False,
                   key_cert_sign="cert_signing" in uses, crl_sign="crl_signing" in uses,
                   encipher_only=False, decipher_only=False), critical=True))
    extended = [EXTENDED_USES[u] for u in sorted(uses) if u in EXTENDED_USES]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, algorithm).public_bytes(serialization.Encoding.PEM).decode()


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _end_time(pem: str) -> str:
    """pulumi-tls's validity_end_time: the certificate's notAfter, RFC 3339."""
    return _rfc3339(x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc)


def _random_text(inputs: dict[str, Any]) -> str:
    alphabet = ""
    if inputs.get("lower", True):
        alphabet += string.ascii_lowercase
    if inputs.get("upper", True):
        alphabet += string.ascii_uppercase
    if inputs.get("numeric", True):
        alphabet += string.digits
    if inputs.get("special", True):
        alphabet += inputs.get("overrideSpecial", "!@#$%&*()-_=+[]{}<>:?")
    return "".join(secrets.choice(alphabet) for _ in range(int(inputs.get("length", 16))))


class RealMaterialMocks(Mocks):
    """The harness's mocks with real keys, certificates and secrets (see the module docstring).
    `outputs[name]` keeps each resource's outputs: what `pulumi stack output` gives the operator."""

    def __init__(self) -> None:
        self.outputs: dict[str, dict[str, Any]] = {}
        self._kept: dict[tuple[str, str], tuple[str | None, dict[str, Any]]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        """Outputs of a resource seen before are kept (a second run of the program, like a second
        `pulumi up` against its state, gets the same keys and secrets), except a certificate inside
        its renewal window, which is issued again."""
        kept = self._kept.get((args.typ, args.name))
        if kept is None or self._ready_for_renewal(args, kept[1]):
            self._kept[(args.typ, args.name)] = self._new(args)
        return self._kept[(args.typ, args.name)]

    @staticmethod
    def _ready_for_renewal(args: pulumi.runtime.MockResourceArgs, outputs: dict[str, Any]) -> bool:
        """pulumi-tls's rule: now + earlyRenewalHours past the validity end the state holds."""
        if args.typ not in CERTIFICATES:
            return False
        early = dt.timedelta(hours=int(_unwrap(args.inputs).get("earlyRenewalHours") or 0))
        end = dt.datetime.fromisoformat(str(outputs["validityEndTime"]).replace("Z", "+00:00"))
        return dt.datetime.now(dt.UTC) + early >= end

    def age_certificates(self, hours: int) -> list[str]:
        """Move every recorded certificate's validity end `hours` back (the state of a stack whose
        certificates were issued that long ago); returns their names."""
        aged = []
        for (typ, name), (_id, outputs) in self._kept.items():
            if typ in CERTIFICATES:
                end = dt.datetime.fromisoformat(outputs["validityEndTime"].replace("Z", "+00:00"))
                outputs["validityEndTime"] = _rfc3339(end - dt.timedelta(hours=hours))
                aged.append(name)
        return aged

    def _new(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        resource_id, outputs = super().new_resource(args)
        inputs, typ = _unwrap(args.inputs), args.typ  # secret inputs arrive wrapped
        if typ == "tls:index/privateKey:PrivateKey":
            outputs.update(_key_outputs(_new_key(inputs)))
        elif typ == "tls:index/selfSignedCert:SelfSignedCert":
            key = _load_key(inputs["privateKeyPem"])
            name = _subject(inputs)
            outputs["certPem"] = _certificate(inputs, name, key.public_key(), name, key, _sans(inputs),
                                              bool(inputs.get("isCaCertificate")))
            outputs["validityEndTime"] = _end_time(outputs["certPem"])
        elif typ == "tls:index/certRequest:CertRequest":
            key = _load_key(inputs["privateKeyPem"])
            builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(inputs))
            if sans := _sans(inputs):
                builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
            outputs["certRequestPem"] = builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()
        elif typ == "tls:index/locallySignedCert:LocallySignedCert":
            request = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
            ca = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
            try:
                sans = list(request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
            except x509.ExtensionNotFound:
                sans = []
            outputs["certPem"] = _certificate(inputs, request.subject, request.public_key(), ca.subject,
                                              _load_key(inputs["caPrivateKeyPem"]), sans,
                                              bool(inputs.get("isCaCertificate")))
            outputs["validityEndTime"] = _end_time(outputs["certPem"])
        elif typ in ("random:index/randomString:RandomString", "random:index/randomPassword:RandomPassword"):
            outputs["result"] = _random_text(inputs)
        self.outputs[args.name] = outputs
        return resource_id, outputs
