"""Every component version a cluster runs: its supported window and its default, one home each.

Upstream supports the three newest Kubernetes minors (1.35 to 1.37 on 2026-12-01). The default is
the newest 1.36 patch, as Kubespray's; the other defaults are the newest releases in the checksum
table (checksums.py) that go with it. Kubernetes 1.35 was the last release that runs on
containerd 1.x, and kubeadm's own expectations per minor (pause image, CoreDNS, the etcd it
tests with) come from cmd/kubeadm/app/constants of each release.
"""

from __future__ import annotations

KUBERNETES_MINORS = (35, 36, 37)
DEFAULT_KUBERNETES = "1.36.4"
LAST_MINOR_ON_CONTAINERD_1 = 35

CONTAINERD_MAJORS = (1, 2)
DEFAULT_CONTAINERD = "2.3.4"
ETCD_MINORS = ((3, 6), (3, 7))
DEFAULT_ETCD = "3.6.14"
DEFAULT_RUNC = "1.4.3"
DEFAULT_CNI_PLUGINS = "1.9.1"
DEFAULT_CRICTL = "1.36.0"
DEFAULT_HARBOR = "2.12.2"

# kubeadm's constants.PauseVersion and CoreDNSVersion per minor: containerd's sandbox image must be
# the pause image kubeadm expects, or its preflight warns about the mismatch.
PAUSE_TAGS = {35: "3.10.1", 36: "3.10.2", 37: "3.10.2"}
COREDNS_TAGS = {35: "v1.13.1", 36: "v1.14.2", 37: "v1.14.6"}


def parse(version: str) -> tuple[int, int, int] | None:
    """`1.36.4` or `v1.36.4` as numbers; None for anything else."""
    parts = version.removeprefix("v").split(".")
    if len(parts) != 3 or not all(p.isdigit() and len(p) <= 6 for p in parts):
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])


def window() -> str:
    return f"1.{KUBERNETES_MINORS[0]} to 1.{KUBERNETES_MINORS[-1]}"


def upgrade_problem(running: str, wanted: str) -> str | None:
    """Why a cluster on Kubernetes `running` cannot be moved to `wanted` (x.y.z each) by kubeadm, or
    None: no downgrade, no skipped minor. The nodes apply the same rule (k8s-lib.sh,
    k8s_upgrade_refusal) before anything on them changes."""
    have, want = parse(running), parse(wanted)
    if have is None or want is None:
        return f"{running!r} or {wanted!r} is not a version such as 1.36.4"
    if want[0] != have[0]:
        return f"Kubernetes {running} cannot become {wanted}: kubeadm upgrades within one major version"
    if want < have:
        return (f"Kubernetes {wanted} is older than the {running} the cluster runs: kubeadm does not downgrade; "
                f"put versions.kubernetes back to {running}")
    if want[1] > have[1] + 1:
        return (f"Kubernetes {running} to {wanted} skips 1.{have[1] + 1}: kubeadm upgrades one minor at a time; "
                f"set versions.kubernetes to a 1.{have[1] + 1} release first")
    return None
