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
    `partial`: the model as far as it parsed (its failed fields absent), when one could be built.
    `subject`: what was refused when it is not a stack (a config class a component takes): one
    problem then reads as an Args problem does, `<Class>.<field>: message`."""

    def __init__(self, problems: list[Problem], partial: Any = None, subject: str | None = None) -> None:
        self.problems = problems
        self.partial = partial
        self.subject = subject
        super().__init__(self.render())

    def render(self) -> str:
        if self.subject is not None and len(self.problems) == 1:
            return str(self.problems[0])
        what = "the stack configuration" if self.subject is None else self.subject
        lines = [f"{what} has {len(self.problems)} problem(s):"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


class UnknownFieldError(SpecError, TypeError):
    """A config or Args class called with keywords it has no field for: a `SpecError` like every
    other refused value (each unknown keyword a problem, with the nearest field name), and a
    `TypeError`, as Python raises for an unexpected keyword argument."""
