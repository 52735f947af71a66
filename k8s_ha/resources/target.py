"""Target: a machine a component runs its steps on, whoever made it.

A component's Args name the machines it runs on as Targets: the name and cluster address its
renderers use, how to reach it over SSH (pinned host key), and the resource after which it is ready
to take steps (a VM's readiness step; nothing for a machine that is ready as it is). `LibvirtVm` and
`ExistingHost` each offer one, and a user of a single component builds them with `Target.ssh`.

The SSH address only reaches a connection, so it may be an `Output` (a machine made by another
provider or program) and is checked once known. The cluster address is written into configuration
files and certificates, so it must be known when the program runs.
"""

from __future__ import annotations

import ipaddress
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_command as command

from k8s_ha.model.validation import refuse_unknown_fields, refuse_unknown_keywords
from k8s_ha.resources.remote import HostAccess, StepFactory, remote_step


@refuse_unknown_fields
@dataclass(frozen=True)
class Target:
    name: str
    ip: ipaddress.IPv4Address
    access: HostAccess
    ready: pulumi.Resource | None = None

    @classmethod
    @refuse_unknown_keywords("Target.ssh")
    def ssh(cls, name: str, ip: str | ipaddress.IPv4Address, *, host_key: pulumi.Input[str],
            private_key: pulumi.Input[str], user: str = "root", port: int = 22,
            address: pulumi.Input[str] | None = None) -> Target:
        """A machine reached at `address` (default: its cluster `ip`) as `user`, with a pinned host key.

        `address` may be an `Output`; a plain value is checked here, an `Output` once it is known.
        """
        cluster_ip = cluster_address(name, ip)
        access = HostAccess(name=name, address=ssh_address(name, address if address is not None else str(cluster_ip)),
                            port=port, user=user, host_key=host_key, private_key=private_key)
        return cls(name, cluster_ip, access)

    def step(self, resource_name: str, make_step: StepFactory, material: pulumi.Output[dict[str, str]], *,
             parent: pulumi.Resource, after: Sequence[pulumi.Resource] = (),
             aliases: Sequence[pulumi.Alias] = ()) -> command.remote.Command:
        """Run the step `make_step` renders on this machine, once it is ready and `after` is done."""
        ready = [self.ready] if self.ready is not None else []
        return remote_step(resource_name, self.access, make_step, material, parent=parent,
                           depends_on=[*ready, *after], aliases=aliases)


# A DNS name: dot-separated labels of letters, digits and inner hyphens (RFC 1123).
LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = re.compile(rf"(?=.{{1,253}}$){LABEL}(\.{LABEL})*")


def cluster_address(name: str, ip: object) -> ipaddress.IPv4Address:
    """The machine's address on the cluster network, refusing what renderers cannot write down."""
    if isinstance(ip, pulumi.Output):
        raise ValueError(f"target {name}: the cluster address `ip` must be known when the program runs (it is "
                         "written into configuration files and certificates); pass an Output as `address=` "
                         "(how to reach the machine over SSH) and give `ip` as text")
    try:
        return ipaddress.IPv4Address(ip if isinstance(ip, ipaddress.IPv4Address) else str(ip))
    except ValueError:
        raise ValueError(f"target {name}: ip {ip!r} is not an IPv4 address such as 10.0.0.11") from None


def checked_ssh_address(name: str, address: str) -> str:
    """`address` if it is an IP address or a DNS name SSH can dial."""
    try:
        ipaddress.ip_address(address)
        return address
    except ValueError:
        pass
    if not HOSTNAME.fullmatch(address):
        raise ValueError(f"target {name}: address {address!r} is neither an IP address nor a host name")
    return address


def ssh_address(name: str, address: pulumi.Input[str]) -> pulumi.Input[str]:
    """The SSH address as given: checked now when it is plain text, once known when it is an Output."""
    if isinstance(address, str):
        return checked_ssh_address(name, address)
    known: pulumi.Output[str] = pulumi.Output.from_input(address)
    return known.apply(lambda value: checked_ssh_address(name, value))


def named(targets: Sequence[Target], what: str, expected: Sequence[str] | None = None,
          expected_what: str = "the members") -> dict[str, Target]:
    """Targets by name, refusing duplicates (and, given `expected`, any other set of names)."""
    by_name = {t.name: t for t in targets}
    if len(by_name) != len(targets):
        raise ValueError(f"{what}: two hosts share a name: {[t.name for t in targets]}")
    if expected is not None and sorted(by_name) != sorted(expected):
        raise ValueError(f"{what}: hosts {sorted(by_name)} do not match {expected_what} {sorted(expected)}")
    return by_name


# What each machine was made by, per program run: (role, machine) -> the component. Keyed by the
# run's resource monitor, so tests that build several programs under mocks (each with its own
# monitor) start clean, and nothing outlives the run.
_CLAIMS: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], str]] = weakref.WeakKeyDictionary()


class _NoMonitor:
    """Stands for the run when Pulumi has no monitor (nothing could register then anyway)."""


_NO_MONITOR = _NoMonitor()


def claim_machines(role: str, component: str, targets: Sequence[Target]) -> None:
    """Make `component` (e.g. "ExternalEtcd 'etcd'") the one that makes each target `role` (e.g.
    "an etcd member") in this program run. A machine serves one component of a kind: two would
    write the same files on it, and their per-machine steps (`<machine>-<what>`) the same URN, which
    the engine refuses only once resources exist. So this raises, naming both components, before
    the second registers anything."""
    monitor = pulumi.runtime.settings.get_monitor()
    claims = _CLAIMS.setdefault(monitor if monitor is not None else _NO_MONITOR, {})
    for target in targets:
        holder = claims.get((role, target.name))
        if holder is not None:
            raise ValueError(
                f"{component}: machine {target.name!r} is already {role} of {holder}; a machine serves one "
                f"component of a kind (both would write the same files on it and name their steps "
                f"'{target.name}-...'): give each component its own machines")
    claims.update({(role, target.name): component for target in targets})
