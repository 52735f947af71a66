"""What `preview`/`up` refuse against the stack's last deployment (its outputs), before the engine
runs: a Kubernetes version change kubeadm cannot make, the first master moved or removed, most of
the running masters removed at once."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from k8s_ha.model.stackfile import read_stack_file
from k8s_ha.placement.changes import deployed_change_problems
from k8s_ha.placement.plan import plan_stack
from k8s_ha.placement.report import plan_data

ROOT = Path(__file__).resolve().parents[2]
PROD = read_stack_file(ROOT / "Pulumi.prod.yaml").config


def outputs_of(config: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    """The outputs a deployment of `config` left: its nodes (as exported) and kubernetesVersion."""
    plan = plan_stack(config)
    return {"nodes": plan_data(plan.spec, plan.placement)["nodes"],
            "kubernetesVersion": version or plan.spec.versions.kubernetes}


def problems(deployed: dict[str, Any], config: dict[str, Any]) -> list[str]:
    plan = plan_stack(config)
    return deployed_change_problems(deployed, plan.spec, plan.placement)


def masters(config: dict[str, Any]) -> list[dict[str, Any]]:
    return config["controlPlane"]["nodes"]  # type: ignore[no-any-return]


def test_nothing_deployed_or_nothing_changed_is_no_problem() -> None:
    assert problems({}, PROD) == []
    assert problems(outputs_of(PROD), PROD) == []
    assert problems(outputs_of(PROD, "1.35.8"), PROD) == []  # one minor up: an upgrade


def test_a_skipped_minor_and_a_downgrade_are_refused() -> None:
    assert problems(outputs_of(PROD, "1.34.2"), PROD) == [
        "versions.kubernetes: Kubernetes 1.34.2 to 1.36.4 skips 1.35: kubeadm upgrades one minor at a time; "
        "set versions.kubernetes to a 1.35 release first"]
    assert "does not downgrade" in problems(outputs_of(PROD, "1.37.0"), PROD)[0]


def test_one_master_replaced_is_fine_but_not_the_first_nor_most_at_once() -> None:
    deployed = outputs_of(PROD)
    replaced = copy.deepcopy(PROD)
    new = copy.deepcopy(masters(replaced)[2])
    new.update(name="cp4", ip=new["ip"].rsplit(".", 1)[0] + ".19")
    masters(replaced)[2] = new
    assert problems(deployed, replaced) == []

    reordered = copy.deepcopy(PROD)
    masters(reordered).reverse()
    found = problems(deployed, reordered)
    assert len(found) == 1 and found[0].startswith("controlPlane.nodes: the first master is cp1, which ran "
                                                   "`kubeadm init`"), found

    two_gone = copy.deepcopy(PROD)
    for index, octet in ((1, 18), (2, 19)):
        node = masters(two_gone)[index]
        node.update(name=f"cp{index + 3}", ip=node["ip"].rsplit(".", 1)[0] + f".{octet}")
    found = problems(deployed, two_gone)
    assert found == ["controlPlane.nodes: cp2, cp3 would leave at once, 1 of the 3 running masters stay; keep at "
                     "least 2 and replace the others over several `up`s"], found
