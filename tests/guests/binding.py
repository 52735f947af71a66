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


libvirt = _load()
