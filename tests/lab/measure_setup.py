"""Measure lab setup and teardown time: `python -m tests.lab.measure_setup 3 8` (as root).

The numbers in docs/lab.md come from here; tests never assert on durations.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.lab.labhosts import HostSpec, Lab, SshKey


def measure(hosts: int, rounds: int, keys: Path) -> None:
    client = SshKey.generate(keys / f"client-{hosts}")
    specs = [HostSpec(f"h{i}", SshKey.generate(keys / f"h{hosts}-{i}")) for i in range(hosts)]
    up, ssh, down = [], [], []
    for _ in range(rounds):
        start = time.monotonic()
        with Lab(specs, client) as lab:
            up.append(time.monotonic() - start)
            start = time.monotonic()
            for host in lab.hosts.values():
                host.run("true")
            ssh.append((time.monotonic() - start) / hosts)
            start = time.monotonic()
        down.append(time.monotonic() - start)
        assert lab.leftovers() == []
    print(f"{hosts} hosts: setup median {statistics.median(up):.2f} s (max {max(up):.2f}), "
          f"teardown median {statistics.median(down):.2f} s, one SSH command {statistics.median(ssh):.3f} s")


def main(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as keys:
        for hosts in [int(a) for a in argv] or [3, 8]:
            measure(hosts, rounds=5, keys=Path(keys))


if __name__ == "__main__":
    main(sys.argv[1:])
