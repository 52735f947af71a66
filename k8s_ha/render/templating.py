"""One Jinja environment over `configs/`: strict (an unknown variable is an error), no autoescape
(these are config files, not HTML), trailing newlines kept."""

from __future__ import annotations

import functools
import shlex
from pathlib import Path
from typing import Any

import jinja2

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


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
