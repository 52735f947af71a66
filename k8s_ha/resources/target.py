"""Target: a machine a component runs its steps on, whoever made it.

A component's Args name the machines it runs on as Targets: the name and cluster address its
renderers use, how to reach it over SSH (pinned host key), and the resource after which it is ready
to take steps (a VM's readiness step; nothing for a machine that is ready as it is). `LibvirtVm` and
`ExistingHost` each offer one, and a user of a single component builds them with `Target.ssh`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command

from k8s_ha.resources.remote import HostAccess, StepFactory, remote_step


@dataclass(frozen=True)
class Target:
    name: str
    ip: ipaddress.IPv4Address
    access: HostAccess
    ready: pulumi.Resource | None = None

    @classmethod
    def ssh(cls, name: str, ip: str, *, host_key: pulumi.Input[str], private_key: pulumi.Input[str],
            user: str = "root", port: int = 22, address: str | None = None) -> Target:
        """A machine reached at `address` (default: its cluster `ip`) as `user`, with a pinned host key."""
        access = HostAccess(name=name, address=address or ip, port=port, user=user,
                            host_key=host_key, private_key=private_key)
        return cls(name, ipaddress.IPv4Address(ip), access)

    def step(self, resource_name: str, make_step: StepFactory, material: pulumi.Output[dict[str, str]], *,
             parent: pulumi.Resource, after: Sequence[pulumi.Resource] = ()) -> command.remote.Command:
        """Run the step `make_step` renders on this machine, once it is ready and `after` is done."""
        ready = [self.ready] if self.ready is not None else []
        return remote_step(resource_name, self.access, make_step, material, parent=parent,
                           depends_on=[*ready, *after])


def named(targets: Sequence[Target], what: str, expected: Sequence[str] | None = None) -> dict[str, Target]:
    """Targets by name, refusing duplicates (and, given `expected`, any other set of names)."""
    by_name = {t.name: t for t in targets}
    if len(by_name) != len(targets):
        raise ValueError(f"{what}: two hosts share a name: {[t.name for t in targets]}")
    if expected is not None and sorted(by_name) != sorted(expected):
        raise ValueError(f"{what}: hosts {sorted(by_name)} do not match the members {sorted(expected)}")
    return by_name
