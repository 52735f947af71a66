"""Certificate expiry: the stack's `certificates` output (name -> notAfter, UTC) and the warnings
drawn from it against the renewal window (pki.earlyRenewalHours).

The program's own certificates report pulumi-tls's `validity_end_time`; each master's k8s-certs
step reports kubeadm's and its kubelet client certificate as "k8s-ha certificate NAME NOT_AFTER"
lines. CAs are named "*-ca": the program never replaces a running cluster's CAs, so a CA inside the
window is a warning to plan a rotation, not something `up` does.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

REPORT_LINE = re.compile(r"^k8s-ha certificate (\S+) (\S+)$", re.MULTILINE)


def step_report(stdout: str) -> dict[str, str]:
    """The expiries a k8s-certs step printed, by certificate name."""
    return dict(REPORT_LINE.findall(stdout or ""))


def parse_time(text: str) -> dt.datetime:
    """An RFC 3339 time as pulumi-tls and the steps write it (UTC, "Z")."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def expiry_warnings(expiries: Mapping[str, object], window_hours: int, now: dt.datetime) -> list[str]:
    """One line per certificate that expires inside the window from `now` (or has expired)."""
    lines = []
    for name, value in sorted(expiries.items()):
        if not isinstance(value, str) or not value:
            continue  # not known yet (a preview of a new stack)
        end = parse_time(value)
        left = end - now
        if left > dt.timedelta(hours=window_hours):
            continue
        when = "expired" if left <= dt.timedelta(0) else f"expires in {left.total_seconds() / 86400:.1f} d"
        what = (f"CA {name} {when} ({value}): the program does not replace a running cluster's CAs; "
                "plan a rotation (docs/kubernetes.md, Certificates)") if name.endswith("-ca") else (
                f"certificate {name} {when} ({value}), inside pki.earlyRenewalHours ({window_hours} h): "
                "`up` renews it")
        lines.append(what)
    return lines
