"""One node-container cluster, as every cluster-tier module gets it: the machine's tunables set,
the lab namespace made, the lab bundle served (with the upgrade's starting release too when asked),
the test image pushed, the recorded stack ready to boot; and afterwards every node gone, nothing
left on the machine and the tunables put back, checked."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.cluster.bundle_server import LabBundleServer
from tests.cluster.checklist import agnhost_image
from tests.nodes.containers import NodeLab
from tests.nodes.stack import NodeClusterStack
from tests.nodes.tunables import KubeletTunables
from tests.support.lab_artifacts import UPGRADE_FROM_BUNDLE, lab_binary, lab_pins


@contextlib.contextmanager
def lab_cluster(work: Path, rootfs: Path, cache: Path, *, upgrade_from: bool = False,
                on_close: Callable[[], None] = lambda: None) -> Iterator[tuple[NodeClusterStack, LabBundleServer]]:
    """`upgrade_from`: the stack starts on the release the rolling upgrade starts from, and both
    bundles are served. `on_close` runs before the nodes are removed, whatever happened."""
    bundles = [cache / "bundle", cache / UPGRADE_FROM_BUNDLE] if upgrade_from else [cache / "bundle"]
    pins = lab_pins(cache, UPGRADE_FROM_BUNDLE if upgrade_from else "bundle")  # checksums, image digests
    lab = NodeLab(work)
    served = LabBundleServer(lab, bundles, work / "registry")
    with KubeletTunables() as tunables, lab, served:
        layout, path = agnhost_image(cache)
        served.push(layout, path)
        stack = NodeClusterStack(lab, rootfs, work / "cluster", pins, lab_binary(cache, "kubectl"),
                                 upgrade_from=upgrade_from)
        try:
            yield stack, served
        finally:
            on_close()
            failed = stack.close()
    leftovers = lab.leftovers()
    assert not failed and not leftovers, f"the tier left things behind: {failed} {leftovers}"
    assert not tunables.changed(), f"machine-global tunables not restored: {tunables.changed()}"
