"""The guests tier's stack: a real k8s-ha stack config on two lab hypervisors, run by the program.

    stack config -> run the program (recording monitor, real key material) -> recorded graph
      -> LibvirtDriver makes the LB and etcd VMs on hv-a / hv-b -> wait for SSH (pinned key)
      -> the recorded remote.Command steps of those hosts, in the graph's dependency order
      (tests/support/recorded_stack.py)

The control-plane nodes are in the stack (the spec needs them) and the program defines their VMs,
but this tier boots only the load balancers and etcd members; their kubeadm steps belong to the
cluster tier.

Placement is pinned so that one hypervisor (hv-a) holds the MASTER load balancer and a minority of
etcd members: losing it leaves the VIP and etcd quorum on hv-b (2 hypervisors are below the
3 the project recommends; the program warns, and the drills measure the surviving side).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.guests.config import BOOTED, ETCD_NAMES, LB_NAMES, stack_config
from tests.guests.driver import GuestError, LibvirtDriver
from tests.guests.hypervisors import LabHypervisors
from tests.support.recorded_stack import COMMAND, HostStalled, RecordedStack

__all__ = ["BOOTED", "COMMAND", "ETCD_NAMES", "LB_NAMES", "GuestStack"]

# A booting guest writes to its serial console (kernel, systemd, cloud-init) until sshd answers; one
# CI run's guest sat silent with no route to it for the whole 40 min SSH wait. Silence this long
# without SSH means it will not come up: power-cycle it once, as an operator would.
CONSOLE_SILENT_S = 300.0


class GuestStack(RecordedStack):
    """The recorded program and the guests made from it; `close()` removes every guest."""

    error = GuestError

    def __init__(self, hvs: LabHypervisors, image: Path, domain_type: str, work: Path,
                 log: Callable[[str], None] = print, *, config: dict[str, Any] | None = None,
                 booted: tuple[str, ...] = BOOTED) -> None:
        """`config`: another stack config on these hypervisors (the cluster tier's); `booted`: the
        hosts this stack boots and bootstraps (default: the guests tier's LBs and etcd members)."""
        self.hvs = hvs
        config = config if config is not None else stack_config(
            {n: hv.uri for n, hv in hvs.hypervisors.items()}, hvs.client_ip, image, domain_type)
        super().__init__(hvs, config, work, log, booted)
        self.driver = LibvirtDriver(self.graph, work, log)

    def boot_log(self, name: str) -> Path:
        return self.work / f"{self.driver.vms[name].domain.inputs['name']}.console.log"

    console_log = boot_log

    def describe(self, name: str) -> str:
        return f"VM {name} on {self.driver.vms[name].hypervisor}"

    def power_off(self, name: str) -> None:
        self.driver.domain(name).destroy()

    def pull_plug(self, name: str) -> float:
        """A power cut whose instant is known: SIGKILL the guest's QEMU; returns that instant, and
        returns once libvirt has marked the domain shut off (so `power_on` can start it). `virsh
        destroy` (`power_off`) cuts power too, but returns only after libvirt's 200 ms polls and its
        clean-up, which on a loaded host came seconds after the guest had stopped."""
        domain = self.driver.domain(name)
        cut = self.hvs.kill_guest(str(self.driver.vms[name].domain.inputs["name"]))
        deadline = time.monotonic() + 30
        while domain.isActive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return cut

    def power_on(self, name: str) -> None:
        self.driver.domain(name).create()

    def boot(self, names: tuple[str, ...] | None = None) -> dict[str, float]:
        """Make and start the VMs, wait for each one's SSH; returns define->SSH seconds per VM.
        A guest that stops or whose console goes silent is power-cycled once (`power_cycled`)."""
        names = names or self.booted
        self.started = self.driver.create(list(names))
        self.power_cycled: dict[str, str] = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(names)) as pool:
            waits = {n: pool.submit(self._wait_booted, n) for n in names}
            self.reachable = {n: round(f.result(), 1) for n, f in waits.items()}
        return self.reachable

    def _wait_booted(self, name: str) -> float:
        since = self.started[name]
        try:
            return self.wait_for_ssh(name, since, stalled=self.stall_watch(name))
        except HostStalled as stall:
            self.log(f"{stall}; power-cycling it once. Its console's last lines:\n{self.console_tail(name)}")
            self.power_cycled[name] = str(stall)
        with contextlib.suppress(Exception):
            self.power_off(name)
        self.power_on(name)
        try:
            return self.wait_for_ssh(name, since, stalled=self.stall_watch(name))
        except HostStalled as stall:
            raise self.error(f"{stall}, again after a power cycle. Its console's last lines:\n"
                             f"{self.console_tail(name)}") from None

    def stall_watch(self, name: str, silent_s: float = CONSOLE_SILENT_S) -> Callable[[], str | None]:
        """A check for `wait_for_ssh`: the domain stopped, or its console log has not grown for `silent_s`."""
        log = self.boot_log(name)
        seen = {"size": -1, "at": time.monotonic()}

        def stalled() -> str | None:
            if not self.driver.domain(name).isActive():
                return "its domain stopped"
            size = log.stat().st_size if log.exists() else 0
            now = time.monotonic()
            if size != seen["size"]:
                seen.update(size=size, at=now)
            elif now - seen["at"] > silent_s:
                return f"no SSH and its console silent for {silent_s:g} s"
            return None
        return stalled

    def console_tail(self, name: str, lines: int = 25) -> str:
        log = self.boot_log(name)
        if not log.exists():
            return f"(no console log at {log})"
        text = log.read_text(errors="replace").replace("\r", "")
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> list[str]:
        with contextlib.suppress(Exception):
            self.driver.close()
        return self.driver.destroy()
