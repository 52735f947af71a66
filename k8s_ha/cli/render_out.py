"""The `render --out` directory: written only when empty or holding an earlier render, which is
replaced whole, so no host directory of an earlier render survives to be mistaken for current."""

from __future__ import annotations

import shutil
from pathlib import Path

MARKER = ".k8s-ha-render"


class OutDirError(Exception):
    """The directory cannot be rendered into; the message says why and what to do."""


def prepare(out: Path) -> None:
    """Make `out` an empty directory holding only the marker: create it, or clear a render's earlier
    output; refuse anything else that is not empty (it might be the user's own files). The marker goes
    in first, so a render that stops half way can still be replaced by the next."""
    if out.exists() and not out.is_dir():
        raise OutDirError(f"{out} exists and is not a directory: choose a new or empty directory for --out")
    if not out.exists():
        out.mkdir(parents=True)
        _mark(out)
        return
    entries = list(out.iterdir())
    if not entries:
        _mark(out)
        return
    if not (out / MARKER).is_file():
        raise OutDirError(f"{out} is not empty and holds no {MARKER} (render did not write it): choose a new or "
                          "empty directory for --out, or empty this one yourself")
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    _mark(out)


def _mark(out: Path) -> None:
    """Record that `out` holds render output, so the next render may replace it."""
    (out / MARKER).write_text("written by `python -m k8s_ha render`; the next render replaces this directory\n")
