"""The stack every benchmark scales: prod with one worker pool of N nodes on a /20 node network."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from k8s_ha.model.stackfile import read_stack_file

ROOT = Path(__file__).resolve().parents[1]
SIZES = (10, 100, 1000)


def prod_with_workers(workers: int) -> dict[str, Any]:
    config = copy.deepcopy(read_stack_file(ROOT / "Pulumi.prod.yaml").config)
    config["network"]["cidr"] = "10.20.0.0/20"
    config["kubernetes"] = {"podCidr": "10.128.0.0/12"}  # room for a /24 per node
    config["workerPools"] = [{"name": "general", "count": workers, "firstIp": "10.20.1.1"}]
    return config
