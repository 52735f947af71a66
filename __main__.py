"""The Pulumi program: stack config -> validated spec -> HaCluster -> exports.

An invalid stack stops here, before any resource is registered, with every problem listed.
"""

import pulumi

from components.cluster import HaCluster
from components.errors import SpecError
from components.placement import place
from components.spec import parse_stack
from components.stackfile import from_running_program

raw = from_running_program()
try:
    spec = parse_stack(raw.config, raw.secret_keys)
except SpecError as error:
    raise pulumi.RunError(f"stack {pulumi.get_stack()}: {error.render()}") from None

placement = place(spec)
for warning in placement.warnings:
    pulumi.log.warn(warning)

cluster = HaCluster("k8s-ha", spec, placement)
for key, value in cluster.exports().items():
    pulumi.export(key, value)
