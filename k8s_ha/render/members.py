"""The one thing every layer's renderer needs to know about a machine: its name and address.

`PlacedNode` (placement) satisfies `Member` as it is; a component used on its own passes plain
`Endpoint`s, so renderers never need the placement or the whole stack.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from k8s_ha.model.validation import refuse_unknown_fields


class Member(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def ip(self) -> ipaddress.IPv4Address: ...


@refuse_unknown_fields
@dataclass(frozen=True)
class Endpoint:
    name: str
    ip: ipaddress.IPv4Address


def endpoints(members: Sequence[Member]) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(m.name, m.ip) for m in members)


def nodes_of(members: Sequence[Member]) -> list[dict[str, object]]:
    """Machines as the stack's nodes (name and address), for the spec's rules on them."""
    return [{"name": member.name, "ip": member.ip} for member in members]
