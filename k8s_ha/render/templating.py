"""One Jinja environment over `configs/`: strict (an unknown variable is an error), no autoescape
(these are config files, not HTML), trailing newlines kept."""

from __future__ import annotations

import functools
import shlex
from pathlib import Path
from typing import Any

import jinja2

_PACKAGE = Path(__file__).resolve().parents[1]
# Installed, configs/ ships as k8s_ha/configs (pyproject.toml); in a checkout it sits beside the package.
_CHECKOUT_CONFIGS = _PACKAGE.parent / "configs"
CONFIGS = _PACKAGE / "configs" if (_PACKAGE / "configs").is_dir() else _CHECKOUT_CONFIGS


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(CONFIGS),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["shquote"] = shlex.quote
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


@functools.cache
def read(name: str) -> str:
    """A file from configs/ as it is (scripts that need no templating); read once per process."""
    return (CONFIGS / name).read_text()
