"""Where a measurement came from: the day and the commit, recorded beside every figure in bench/results."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def commit() -> str:
    """The checkout's short commit, with `-dirty` when tracked files differ from it."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                          check=False)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True, cwd=ROOT, check=False).stdout.strip()
    return done.stdout.strip() + ("-dirty" if dirty else "")


def provenance() -> dict[str, str]:
    """`measured_on` (today) and `commit`, for a results file."""
    return {"measured_on": datetime.date.today().isoformat(), "commit": commit()}
