"""libvirt's Python binding: from the virtualenv when installed there (libvirt-python), otherwise
Debian's python3-libvirt, found by asking Debian's /usr/bin/python3 where it lives (the binding is a C
extension built for that interpreter; the venv's Python is the same 3.11)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from types import ModuleType


def _load() -> ModuleType:
    try:
        return importlib.import_module("libvirt")
    except ImportError:
        pass
    found = subprocess.run(["/usr/bin/python3", "-c", "import os, libvirt; print(os.path.dirname(libvirt.__file__))"],
                           capture_output=True, text=True, check=False)
    if found.returncode != 0:
        raise ImportError("libvirt's Python binding is missing: install python3-libvirt (Debian) or libvirt-python")
    sys.path.append(found.stdout.strip())
    return importlib.import_module("libvirt")


class _Missing:
    """Stands for the binding where it is missing, so the tier's modules import (and the unit tier
    collects) everywhere; any use raises the reason. The tier's fixture skips or fails first."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __getattr__(self, name: str) -> object:
        raise ImportError(self.reason)


try:
    libvirt: ModuleType | _Missing = _load()
except ImportError as error:
    libvirt = _Missing(str(error))


def missing_reason() -> str | None:
    return libvirt.reason if isinstance(libvirt, _Missing) else None
