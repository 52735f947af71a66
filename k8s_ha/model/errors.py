"""Problems found in a stack, reported all together and each tied to a config path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(ValueError):
    """A stack that must not be deployed; `problems` holds every reason, not just the first.
    `partial`: the model as far as it parsed (its failed fields absent), when one could be built."""

    def __init__(self, problems: list[Problem], partial: Any = None) -> None:
        self.problems = problems
        self.partial = partial
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"the stack configuration has {len(self.problems)} problem(s):"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)
