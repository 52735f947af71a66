"""RemoteStep: run one rendered step on one host with pulumi-command, safely and re-runnably.

- The bundle (files + script) goes on stdin and is always secret; the command text holds only the
  step name and a content hash, so `pulumi preview` shows *which* step changes without its secrets.
- A changed bundle changes the command text and stdin: pulumi-command then runs `update` in place
  (the same idempotent script); `triggers` are never used because they force a replacement.
- pulumi-command feeds the same stdin to delete (pulumi-command#250), so the bundle carries its
  own teardown and the delete command only selects it.
- Connections pin the host key: no trust on first use. Dial retries cover a VM's first boot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command

from components.render import material as m
from components.render.steps import Step, bundle, digest, remote_command

# 60 dials x up to 10 s each: room for a TCG guest's first boot and cloud-init run.
DIAL_ERROR_LIMIT = 60
PER_DIAL_TIMEOUT_S = 10


@dataclass(frozen=True)
class HostAccess:
    """How to reach one node over SSH; the same shape for VMs and existing hosts."""

    name: str
    address: str
    port: int
    user: str
    host_key: pulumi.Input[str]
    private_key: pulumi.Input[str]

    def connection(self) -> command.remote.ConnectionArgs:
        return command.remote.ConnectionArgs(
            host=self.address,
            port=self.port,
            user=self.user,
            private_key=secret(self.private_key),
            host_key=self.host_key,
            dial_error_limit=DIAL_ERROR_LIMIT,
            per_dial_timeout=PER_DIAL_TIMEOUT_S,
        )


StepFactory = Callable[[m.Material], Step]


def secret(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """`Output.secret` for text. Pulumi types its argument as `Input[U]` (a union that includes
    `Output[U]`), so mypy cannot pick U when handed an `Output[str]`; typing the parameter as
    `Input[str]` here settles it for every caller."""
    return pulumi.Output.secret(value)


def resolve(material: dict[str, pulumi.Output[str]]) -> pulumi.Output[dict[str, str]]:
    """All material as one Output of a plain dict, for renderers that run inside `apply`."""
    return pulumi.Output.all(**material).apply(lambda values: dict(values))


def remote_step(
    resource_name: str,
    host: HostAccess,
    make_step: StepFactory,
    material: pulumi.Output[dict[str, str]],
    *,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
) -> command.remote.Command:
    """One `remote.Command` running the step that `make_step` renders from resolved material."""
    text = material.apply(lambda values: bundle(make_step(values)))
    label = pulumi.Output.unsecret(text.apply(digest)).apply(
        lambda h: f"{resource_name} sha256:{h[:16]}"
    )
    return command.remote.Command(
        resource_name,
        connection=host.connection(),
        create=label.apply(lambda lbl: remote_command("apply", lbl)),
        update=label.apply(lambda lbl: remote_command("apply", lbl)),
        delete=label.apply(lambda lbl: remote_command("delete", lbl)),
        stdin=secret(text),
        logging=command.remote.Logging.STDERR,
        add_previous_output_in_env=False,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(depends_on),
            additional_secret_outputs=["stdout", "stderr"],
            delete_before_replace=True,
        ),
    )
