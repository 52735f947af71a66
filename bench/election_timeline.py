"""Where the time goes after an etcd leader's power cut: each survivor's own Raft events, read from
its journal and put on the host's clock.

The drill measures one number (the first successful write); etcd logs the steps in between
(`lost leader`, `is starting a new election`, `became pre-candidate`, `became candidate`,
`became leader`, `elected leader`). Each guest's clock is mapped onto the host's through one SSH
session that answers each line sent with `date +%s.%N`: the sample with the shortest round trip
gives the offset, known to half that round trip, which is reported with the events.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime
from typing import Any, Protocol

# The Raft log lines that mark each step (go.etcd.io/raft), and the name each gets here.
EVENTS = {"lost leader": "lost_leader", "is starting a new election": "campaign",
          "became pre-candidate": "pre_candidate", "became candidate": "candidate",
          "became leader": "leader", "elected leader": "knows_leader"}


SAMPLES = 8


class Runs(Protocol):
    def run(self, name: str, script: str, *, stdin: str = "", timeout: float = 60.0,
            check: bool = True) -> Any: ...

    def ssh_argv(self, name: str) -> list[str]: ...


def guest_clock_offset(stack: Runs, name: str) -> tuple[float, float]:
    """(guest clock - host clock, half the round trip that bounds the error), in seconds, from the
    best of SAMPLES exchanges over one established SSH session (its set-up is not in any sample)."""
    session = subprocess.Popen([*stack.ssh_argv(name), "while read -r _; do date +%s.%N; done"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    assert session.stdin is not None and session.stdout is not None
    best: tuple[float, float] | None = None
    try:
        for _ in range(SAMPLES):
            before = time.time()
            session.stdin.write("x\n")
            session.stdin.flush()
            guest = float(session.stdout.readline().strip())
            after = time.time()
            sample = (guest - (before + after) / 2, (after - before) / 2)
            if best is None or sample[1] < best[1]:
                best = sample
    finally:
        session.kill()
        session.wait()
    assert best is not None
    return best


def timestamp(value: object) -> float | None:
    """etcd's zap `ts`: ISO 8601 (`...Z` or `...+0000`) or seconds since the epoch."""
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = f"{text[:-2]}:{text[-2:]}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def first_events(journal: str, since: float) -> dict[str, float]:
    """The first time (on the guest's clock) each step appears at or after `since`."""
    found: dict[str, float] = {}
    for line in journal.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        at = timestamp(entry.get("ts")) if isinstance(entry, dict) else None
        if at is None or at < since:
            continue
        message = str(entry.get("msg", ""))
        for needle, key in EVENTS.items():
            if needle in message and key not in found:
                found[key] = at
    return found


def election_timeline(stack: Runs, survivors: list[str], cut_at: float) -> dict[str, Any]:
    """Each survivor's steps in seconds after the cut (`cut_at`: the host's `time.time()`)."""
    timeline: dict[str, Any] = {}
    for name in survivors:
        offset, error = guest_clock_offset(stack, name)
        since = cut_at + offset - 0.5  # a step cannot come before the cut; the margin covers the offset
        journal = stack.run(name, f"journalctl -u etcd -o cat --no-pager --since @{int(since)}").stdout
        events = first_events(journal, since)
        timeline[name] = {"events_s": {k: round(v - offset - cut_at, 3) for k, v in
                                       sorted(events.items(), key=lambda item: item[1])},
                          "clock_error_s": round(error, 3)}
    return timeline
