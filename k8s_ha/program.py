"""The Pulumi program as a function: stack config -> validated spec -> HaCluster -> exports.

`__main__.py` (plain `pulumi up`) and the Automation API runner (`python -m k8s_ha up`) both call
`pulumi_program`, so there is one program. An invalid stack stops here, before any resource is
registered, with every problem listed.
"""

import pulumi

from k8s_ha.model.errors import SpecError
from k8s_ha.model.stackfile import from_running_program
from k8s_ha.placement.plan import plan_stack
from k8s_ha.resources.cluster import HaCluster


def pulumi_program() -> None:
    raw = from_running_program()
    try:
        plan = plan_stack(raw.config, raw.secret_keys, raw.problems)
    except SpecError as error:
        raise pulumi.RunError(f"stack {pulumi.get_stack()}: {error.render()}") from None

    for warning in plan.warnings:
        pulumi.log.warn(warning)

    cluster = HaCluster("k8s-ha", plan)
    for key, value in cluster.exports().items():
        pulumi.export(key, value)
