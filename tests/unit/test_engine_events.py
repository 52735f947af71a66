"""The event printer names the hypervisor behind a failure, with URNs as the real engine writes them
(found out on the engine tier: parented providers' types read `Parent$pulumi:providers:libvirt`, and a
provider reference is `URN::ID`)."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

from k8s_ha.cli.engine import EventPrinter

STACK = "urn:pulumi:dev::k8s-ha::"
PROVIDER = STACK + "k8s-ha:index:HaCluster$pulumi:providers:libvirt::hv-local"
DOMAIN = STACK + "k8s-ha:index:HaCluster$k8s-ha:index:WorkerPool$libvirt:index/domain:Domain::w1-domain"
URI = "qemu+ssh://root@10.0.0.1/system"


def event(**fields: Any) -> SimpleNamespace:
    names = ("resource_pre_event", "res_outputs_event", "res_op_failed_event", "diagnostic_event", "summary_event")
    return SimpleNamespace(**{name: fields.get(name) for name in names})


def diagnostic(urn: str, message: str) -> SimpleNamespace:
    return event(diagnostic_event=SimpleNamespace(message=message, ephemeral=False, urn=urn, severity="error"))


def printer() -> EventPrinter:
    return EventPrinter(out=io.StringIO(), hypervisor_uris={"local": URI})


def test_a_failed_provider_is_named_by_hypervisor_and_uri() -> None:
    p = printer()
    p(diagnostic(PROVIDER, "1 error occurred:\n\t* failed to connect: dial unix /x: no such file"))
    assert p.errors == [f"hv-local: hypervisor local ({URI}) cannot be used: failed to connect: dial unix /x: "
                        "no such file"]


def test_a_resource_on_that_provider_is_named_too() -> None:
    p = printer()
    meta = SimpleNamespace(urn=DOMAIN, provider=f"{PROVIDER}::04da6b54-80e4-46f7-96ec-b56ff0331ba9",
                           op="create", type="libvirt:index/domain:Domain", diffs=[])
    p(event(resource_pre_event=SimpleNamespace(metadata=meta)))
    p(diagnostic(DOMAIN, "error creating libvirt domain: virError(Code=8)"))
    assert p.errors[0].startswith(f"w1-domain: hypervisor local ({URI}) cannot be used: error creating")


def test_other_failures_are_left_as_the_engine_wrote_them() -> None:
    p = printer()
    p(diagnostic(STACK + "k8s-ha:index:HaCluster$command:remote:Command::lb1-haproxy", "exit status 1"))
    assert p.errors == ["lb1-haproxy: exit status 1"]
