"""RemoteStep: run one rendered step on one host with pulumi-command, safely and re-runnably.

- The bundle (files + script) goes on stdin and is always secret; the command text holds only the
  step name and a content hash, so `pulumi preview` shows *which* step changes without its secrets.
- A changed bundle changes the command text and stdin: pulumi-command then runs `update` in place
  (the same idempotent script); `triggers` are never used because they force a replacement.
- pulumi-command feeds the same stdin to delete (pulumi-command#250), so the bundle carries its
  own teardown and the delete command only selects it.
- Connections pin the host key: no trust on first use. A VM's first step dials for `ssh.bootTimeoutS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import pulumi
import pulumi_command as command

from k8s_ha.render import material as m
from k8s_ha.render.steps import Step, bundle, digest, remote_command

# Between failed dials pulumi-command waits as the Pulumi SDK's retry.Until does: 0.1 s, then
# 1.5x each time, at most 5 s. A failed dial itself takes ~0 s (refused) to ~3 s (no ARP answer).
FIRST_RETRY_S, RETRY_BACKOFF, MAX_RETRY_S = 0.1, 1.5, 5.0
# Steps after a host's first: it is up, so 60 failed dials (~4.5 min of waits) ride out a reboot.
DIAL_ERROR_LIMIT = 60
PER_DIAL_TIMEOUT_S = 10
# An existing host is up before the program runs: a few dials ride out a restarting sshd, and one
# that is off the network is reported in about a minute instead of ten.
EXISTING_HOST_DIALS = 6


def dials_for(seconds: float) -> int:
    """Failed dials whose waits alone add up to `seconds`: a step given this many keeps dialling at
    least that long (a dial count is the only budget pulumi-command offers)."""
    waited, delay, dials = 0.0, FIRST_RETRY_S, 0
    while waited < seconds:
        dials += 1
        waited += delay
        delay = min(delay * RETRY_BACKOFF, MAX_RETRY_S)
    return dials


@dataclass(frozen=True)
class HostAccess:
    """How to reach one node over SSH; the same shape for VMs and existing hosts."""

    name: str
    address: pulumi.Input[str]  # an Output for a machine another provider or program makes
    port: int
    user: str
    host_key: pulumi.Input[str]
    private_key: pulumi.Input[str]
    dials: int = DIAL_ERROR_LIMIT  # failed connection attempts before a step gives up

    def dialling(self, dials: int) -> HostAccess:
        """The same host with another dial budget (a VM's first step waits out its boot)."""
        return replace(self, dials=dials)

    def connection(self) -> command.remote.ConnectionArgs:
        return command.remote.ConnectionArgs(
            host=self.address,
            port=self.port,
            user=self.user,
            private_key=secret(self.private_key),
            host_key=self.host_key,
            dial_error_limit=self.dials,
            per_dial_timeout=PER_DIAL_TIMEOUT_S,
        )


StepFactory = Callable[[m.Material], Step]


def secret(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """`Output.secret` for text. Pulumi types its argument as `Input[U]` (a union that includes
    `Output[U]`), so mypy cannot pick U when handed an `Output[str]`; typing the parameter as
    `Input[str]` here settles it for every caller."""
    return pulumi.Output.secret(value)


def resolve(material: dict[str, pulumi.Output[str]]) -> pulumi.Output[dict[str, str]]:
    """Material as one Output of a plain dict, for renderers that run inside `apply`."""
    return pulumi.Output.all(**material).apply(lambda values: dict(values))


class MaterialViews:
    """What each node's steps may see: cluster-wide material plus that node's own keys.

    Besides least privilege this keeps the graph linear: a step depends on the resources behind
    the material it resolves, and handing every step every node's host key made the dependency
    count grow with steps x nodes (measured: 14x the bare SDK's cost at 100 workers).
    """

    def __init__(self, material: dict[str, pulumi.Output[str]]) -> None:
        self._own: dict[str, dict[str, pulumi.Output[str]]] = {}
        shared: dict[str, pulumi.Output[str]] = {}
        for name, value in material.items():
            node = m.owner(name)
            if node is None:
                shared[name] = value
            else:
                self._own.setdefault(node, {})[name] = value
        self.shared = resolve(shared)
        self._views: dict[str, pulumi.Output[dict[str, str]]] = {}

    def for_node(self, node: str) -> pulumi.Output[dict[str, str]]:
        if node not in self._views:
            own = self._own.get(node)
            self._views[node] = self.shared if not own else pulumi.Output.all(self.shared, resolve(own)).apply(
                lambda both: {**both[0], **both[1]}
            )
        return self._views[node]


def renamed_from(old: str, new: str) -> list[pulumi.Alias]:
    """The alias that keeps a child renamed from `old` to `new` the same resource in existing stacks
    (no replacement); none when the name did not change."""
    return [] if old == new else [pulumi.Alias(name=old)]


def remote_step(
    resource_name: str,
    host: HostAccess,
    make_step: StepFactory,
    material: pulumi.Output[dict[str, str]],
    *,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
    aliases: Sequence[pulumi.Alias] = (),
) -> command.remote.Command:
    """One `remote.Command` running the step that `make_step` renders from resolved material."""
    text = material.apply(lambda values: bundle(make_step(values)))
    # The hash of secret content is not itself a secret; unsecret it so preview can show it.
    apply_command = pulumi.Output.unsecret(
        text.apply(lambda t: remote_command("apply", f"{resource_name} sha256:{digest(t)[:16]}"))
    )
    return command.remote.Command(
        resource_name,
        connection=host.connection(),
        create=apply_command,
        update=apply_command,
        delete=remote_command("delete", resource_name),
        stdin=secret(text),
        logging=command.remote.Logging.STDERR,
        add_previous_output_in_env=False,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(depends_on),
            aliases=list(aliases),
            additional_secret_outputs=["stdout", "stderr"],
            delete_before_replace=True,
        ),
    )
