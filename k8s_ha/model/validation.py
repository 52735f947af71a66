"""One set of rules for every spec model, run wherever a model is built.

A stack file and a Python caller meet the same validation: constructing any `Model` (directly,
or as part of a whole stack) runs its field checks (`Check` annotations), its cross-field rules
(`@rule` methods) and refuses unknown keys with the nearest known name. Problems never stop each
other: a field whose type is wrong is left out of the rules that need it, and everything else
is still checked, so one run lists every problem, each at its field path (stack-file spelling,
e.g. `loadBalancer.haproxyCheck.timeoutS`).

How: each model's wrap validator lets pydantic type the data, then runs the model's own rules. A
nested model keeps its problems on itself (a wrong value still has the right type, so its parent
parses and runs its own rules on it); only the outermost model raises, with the problems of the
whole tree. A type error makes the model unusable, so it is raised at once together with what the
fields that did parse reveal; the parent then leaves that field out in the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, ClassVar, Self, TypeVar, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

from k8s_ha.model.errors import Problem, SpecError, UnknownFieldError

Loc = tuple[str | int, ...]
RuleMethod = Callable[[Any], Iterator[tuple[str, str]]]
F = TypeVar("F", bound=RuleMethod)
T = TypeVar("T")
Fn = TypeVar("Fn", bound=Callable[..., Any])

# How many models are being validated around this one: only the outermost raises its problems.
_DEPTH: ContextVar[int] = ContextVar("k8s_ha_model_depth", default=0)
# What the outermost model that just failed could still build (its fields that parsed), handed to
# SpecError so that a later phase (placement) can still check what it needs.
_REFUSED: ContextVar[BaseModel | None] = ContextVar("k8s_ha_model_refused", default=None)
_PATH_PART = re.compile(r"\[(\d+)\]|([^.\[]+)")


@dataclass(frozen=True)
class Check:
    """A rule on one field's value: returns a message when the value is wrong. None is skipped."""

    rule: Callable[[Any], str | None]


def between(low: float, high: float) -> Check:
    return Check(lambda v: None if low <= v <= high else f"{v} is outside {low}..{high}")


def at_most(high: int, what: str) -> Check:
    """A bound on a list's length; the items of a list over its bound are not checked one by one."""
    return Check(lambda v: None if len(v) <= high else f"{len(v)} {what}: at most {high}")


def rule(*fields: str) -> Callable[[F], F]:
    """Mark a method as a cross-field rule of its model. `fields` are the (Python) field names it
    reads: when one of them failed its type check, the rule is skipped instead of guessing."""

    def mark(method: F) -> F:
        method.__rule_fields__ = frozenset(fields)  # type: ignore[attr-defined]
        return method

    return mark


def suggestion(key: str, known: list[str]) -> str | None:
    """The known name a misspelt key most probably meant (case-insensitive), if any is close."""
    lowered = {name.lower(): name for name in reversed(known)}  # the first spelling wins
    match = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.7)
    return lowered[match[0]] if match else None


def unknown_key(key: str, known: list[str], candidates: list[str] | None = None, noun: str = "key") -> str:
    """The message for a key that is not one of `known`; `candidates` (default `known`) are the
    spellings a suggestion may use, in order of preference; `noun`: what a key is called there."""
    near = suggestion(key, candidates or known)
    if near is not None:
        return f"unknown {noun} {key!r}: did you mean {near!r}?"
    return f"unknown {noun} {key!r} (known {noun}s here: {', '.join(sorted(known))})"


def path_loc(path: str) -> Loc:
    """`nodes[2].ip` as ('nodes', 2, 'ip'), so that a parent can put its own key in front."""
    return tuple(int(index) if index else name for index, name in _PATH_PART.findall(path))


def format_loc(loc: Loc) -> str:
    """A pydantic location as a config path; pydantic's own layer tags are not keys and go."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or part.startswith("function-"):
            continue
        elif part.startswith("("):
            out += part
        else:
            out = f"{out}.{part}" if out else part
    return out


def problems_of(error: ValidationError) -> list[Problem]:
    """Every problem, grouped by top-level key (a misspelt key next to the one it should have
    been), in the order found within each group."""
    problems = [
        Problem(format_loc(e["loc"]) or "(top)", "is required" if e["type"] == "missing" else e["msg"])
        for e in error.errors()
    ]
    return sorted(problems, key=lambda p: str(path_loc(p.path)[:1]).lower())


def _message(error: Any) -> str:
    return "is required" if error["type"] == "missing" else str(error["msg"])


def _line(loc: Loc, message: str, value: Any = None) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("spec", "{message}", {"message": message}),
                            loc=loc, input=value)


def _clean(loc: Loc) -> Loc:
    return path_loc(format_loc(loc))


class Model(BaseModel):
    """Base of every spec model: camelCase keys as in the stack file, frozen, checked when built.

    Building one raises `SpecError` (a ValueError) listing every problem of it and of everything
    inside it; `parse_stack` builds a `StackSpec` the same way."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True)

    # Set on a nested model built inside a larger one; empty on every model a caller ever sees.
    _problems: tuple[tuple[Loc, str], ...] = PrivateAttr(default=())
    _rules: ClassVar[tuple[RuleMethod, ...]] = ()
    # Fields that, when they fail their type check, stand in as empty for this model's rules
    # instead of leaving those rules out (for rules that only ever complain about what exists).
    _empty_when_unparsed: ClassVar[dict[str, Callable[[], Any]]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._rules = tuple(
            member for klass in reversed(cls.__mro__) for member in vars(klass).values()
            if hasattr(member, "__rule_fields__")
        )

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise SpecError(problems_of(error)) from None

    # Only the error type differs from pydantic's own __init__: nested models are still validated
    # by pydantic directly (this marker tells it so), and their problems reach the outermost one.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def parse(cls, data: Any) -> Self:
        """`data` (a stack file's mapping) as this model, or SpecError with every problem."""
        _REFUSED.set(None)
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise SpecError(problems_of(error), partial=_REFUSED.get()) from None

    @model_validator(mode="wrap")
    @classmethod
    def _validate_everything(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        if isinstance(data, cls):
            return handler(data)  # built (and checked) already
        token = _DEPTH.set(_DEPTH.get() + 1)
        try:
            try:
                model: Self | None = handler(data)
                errors: list[InitErrorDetails] = []
            except ValidationError as error:
                errors = [_line(_clean(e["loc"]), _message(e), e.get("input")) for e in error.errors()]
                whole = any(not e["loc"] for e in errors)  # not a mapping at all: nothing to go on
                model = None if whole else cls._partial(data, {e["loc"][0] for e in errors})
            problems = [*cls._unknown_keys(data), *(model._own_problems() if model is not None else [])]
        finally:
            _DEPTH.reset(token)
        if errors or (problems and _DEPTH.get() == 0):
            if _DEPTH.get() == 0:
                _REFUSED.set(model)
            raise ValidationError.from_exception_data(cls.__name__, errors + [_line(loc, msg) for loc, msg in problems])
        assert model is not None
        if problems:
            model.__pydantic_private__["_problems"] = tuple(problems)  # type: ignore[index]
        return model

    @classmethod
    def _unknown_keys(cls, data: Any) -> Iterator[tuple[Loc, str]]:
        if not isinstance(data, dict):
            return
        names = [n for n in cls.model_fields]
        known = [info.alias or name for name, info in cls.model_fields.items()]
        for key in data:
            if key not in known and key not in names:
                # snake_case keys come from Python callers: suggest the Python name first
                order = names + known if "_" in str(key) else known + names
                yield (str(key),), unknown_key(str(key), known, order)

    @classmethod
    def _partial(cls, data: Any, failed_keys: set[str | int]) -> Self | None:
        """The fields that did parse, so that the rules that need only them still run; the failed
        ones are absent (reading one is a bug in a rule's declared fields, and raises)."""
        if not isinstance(data, dict):
            return None
        values: dict[str, Any] = {}
        failed: set[str] = set()
        for name, info in cls.model_fields.items():
            key = info.alias or name
            if key in failed_keys or name in failed_keys:
                if name in cls._empty_when_unparsed:
                    values[name] = cls._empty_when_unparsed[name]()
                else:
                    failed.add(name)
                continue
            raw_key = key if key in data else name if name in data else None
            if raw_key is None:
                continue  # its default
            try:
                values[name] = _field_adapter(cls, name).validate_python(data[raw_key])
            except ValidationError:
                failed.add(name)
        partial = cast(Self, cls.model_construct(**values))  # the plugin types it as Model
        for name in failed:
            partial.__dict__.pop(name, None)
        return partial

    @classmethod
    def check_fields(cls, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
        """`values` (Python field names) as building this model checks them: each one's type and
        checks, and every rule that reads only these fields. For the plain-value configs that hold
        some of a model's fields: the model's own rules, not a copy. Returns the values that parsed,
        as typed (an address given as text becomes an address), and every problem at its path."""
        problems: list[tuple[Loc, str]] = []
        typed: dict[str, Any] = {}
        token = _DEPTH.set(_DEPTH.get() + 1)  # as inside this model: nested models keep their problems
        try:
            for name, value in values.items():
                key = cls.model_fields[name].alias or name
                try:
                    typed[name] = _field_adapter(cls, name).validate_python(value)
                except ValidationError as error:
                    problems += [((key, *_clean(e["loc"])), _message(e)) for e in error.errors()]
        finally:
            _DEPTH.reset(token)
        partial = cast(Self, cls.model_construct(**typed))
        for name in cls.model_fields.keys() - typed.keys():
            partial.__dict__.pop(name, None)  # absent: the rules that read it are left out
        problems += partial._own_problems()
        return typed, [Problem(format_loc(loc), message) for loc, message in problems]

    def has_problems(self) -> bool:
        """Whether this nested model was found wrong (always False on a model a caller holds)."""
        return bool(self._problems)

    def _own_problems(self) -> list[tuple[Loc, str]]:
        """Field checks, then every nested model's problems, then this model's rules."""
        problems: list[tuple[Loc, str]] = []
        present = self.__dict__
        for name, info in type(self).model_fields.items():
            if name not in present:
                continue
            value, key = present[name], info.alias or name
            over = False
            if value is not None:
                for meta in info.metadata:
                    if isinstance(meta, Check) and (message := meta.rule(value)):
                        over = True
                        problems.append(((key,), message))
            if isinstance(value, Model):
                problems += [((key, *loc), m) for loc, m in value._problems]
            elif isinstance(value, list) and not over:  # a list over its bound is not walked item by item
                for i, item in enumerate(value):
                    if isinstance(item, Model):
                        problems += [((key, i, *loc), m) for loc, m in item._problems]
        missing = {name for name in type(self).model_fields if name not in present}
        for method in type(self)._rules:
            if not method.__rule_fields__ & missing:  # type: ignore[attr-defined]
                problems += [(path_loc(path), message) for path, message in method(self)]
        return problems


@cache
def _field_adapter(cls: type[BaseModel], name: str) -> TypeAdapter[Any]:
    info = cls.model_fields[name]
    if not info.metadata:
        return TypeAdapter(info.annotation)
    return TypeAdapter(Annotated[info.annotation, *info.metadata])


@dataclass
class PlainCheck:
    """The problems of one plain-value config or Args class (a dataclass a component takes), found
    by the spec models' own rules and raised together as the Args raise theirs:
    `<Class>.<path>: message`.

    Paths are spelt as the models spell them (camelCase, as in a stack file), or with the Python
    field names (`python_names`, as the Args name their fields); a field the class names otherwise
    than the model is reported under the class's name for it."""

    owner: str
    python_names: bool = False
    problems: list[Problem] = field(default_factory=list)

    def fields(self, model: type[Model], values: Mapping[str, Any], renamed: Mapping[str, str] | None = None,
               under: str = "") -> dict[str, Any]:
        """`values` (the model's Python field names) checked by `model`; `renamed`: model field ->
        the class's field; `under`: the path where they sit in the class. Returns the typed values
        under the class's field names."""
        renamed = renamed or {}
        typed, problems = model.check_fields(values)
        spell = (lambda name: name) if self.python_names else to_camel
        keys = {model.model_fields[n].alias or n: spell(renamed.get(n, n)) for n in values}
        for problem in problems:
            head = str(path_loc(problem.path)[0]) if problem.path else ""
            self.add([Problem(keys.get(head, head) + problem.path[len(head):], problem.message)], under)
        return {renamed.get(n, n): value for n, value in typed.items()}

    @staticmethod
    def keep(owner: object, typed: Mapping[str, Any]) -> None:
        """Store the values `fields` typed on the (frozen) dataclass being built, so it holds an
        address given as text as an address, as the stack's model would."""
        for name, value in typed.items():
            object.__setattr__(owner, name, value)

    def add(self, problems: Iterable[Problem], under: str = "") -> None:
        """Problems found by a rule outside the models (e.g. the stack's address rule)."""
        self.problems += [Problem(".".join(p for p in (under, problem.path) if p), problem.message)
                          for problem in problems]

    def done(self) -> None:
        """Raise SpecError with every problem found, each path rooted at the class."""
        if self.problems:
            rooted = [Problem(".".join(p for p in (self.owner, problem.path) if p), problem.message)
                      for problem in self.problems]
            raise SpecError(rooted, subject=self.owner)


def refuse_unknown_fields(cls: type[T]) -> type[T]:
    """Apply over `@dataclass` on a class users construct (a component's Args, a plain-value
    config): a keyword that is no field of it raises `UnknownFieldError` (a SpecError and a
    TypeError) naming every unknown keyword with the nearest field, as the spec models refuse an
    unknown key: `ExternalEtcdArgs.hostz: unknown field 'hostz': did you mean 'hosts'?`. Required
    fields left out are listed with them, but for those an unknown keyword is taken for. Positional
    construction, `dataclasses.replace` and the signature stay as `@dataclass` made them."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"@refuse_unknown_fields goes above @dataclass on {cls.__qualname__}")
    type.__setattr__(cls, "__init__", _refusing_unknown(cls.__init__, cls.__name__, "field"))
    return cls


def refuse_unknown_keywords(owner: str) -> Callable[[Fn], Fn]:
    """The same for a constructor that is a method (under `@classmethod`): `Target.ssh(hostkey=...)`
    raises `Target.ssh.hostkey: unknown keyword 'hostkey': did you mean 'host_key'?`."""
    def decorate(function: Fn) -> Fn:
        return cast(Fn, _refusing_unknown(function, owner, "keyword"))
    return decorate


def _refusing_unknown(function: Callable[..., Any], owner: str, noun: str) -> Callable[..., Any]:
    """`function` (whose first parameter is self or cls) refusing keywords it does not take."""
    parameters = [p for p in list(inspect.signature(function).parameters.values())[1:]
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    names = [p.name for p in parameters]
    known = frozenset(names)
    positional = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
    required = [p.name for p in parameters if p.default is p.empty]

    @functools.wraps(function)
    def checked(first: Any, *args: Any, **kwargs: Any) -> Any:
        unknown = [key for key in kwargs if key not in known]
        if unknown:
            meant = {suggestion(key, names) for key in unknown}  # left out by the misspelling: said once
            given = {*positional[:len(args)], *kwargs, *meant}
            problems = [Problem(f"{owner}.{key}", unknown_key(key, names, noun=noun)) for key in unknown]
            problems += [Problem(f"{owner}.{name}", "is required") for name in required if name not in given]
            # by path, as the spec models list theirs
            raise UnknownFieldError(sorted(problems, key=lambda p: p.path.lower()), subject=owner)
        return function(first, *args, **kwargs)

    return checked
