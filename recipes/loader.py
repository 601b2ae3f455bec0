"""One recipe loader: YAML data checked against a dataclass's fields, with every problem collected.

Run, data, job and source recipes are dataclasses; :func:`load` walks their fields (``str``,
``int``, ``float``, ``bool``, ``Any``, ``Optional``, unions, ``list[X]``, ``tuple[X, ...]``,
``dict[str, X]``, ``Literal`` and nested dataclasses) and builds the typed object from
``yaml.safe_load`` output. It does not stop at the first problem: unknown keys, wrong types,
values outside ``choices``, failed checks and missing required keys are all collected, each with
its file and key path, and raised together as one :class:`RecipeError`::

    recipes/runs/x.yaml: field 'judges[2].batch_sise': expected one of the known keys (backend, ...), got 'batch_sise'

A field's ``metadata`` steers it:

- ``help``: what the key means (:func:`describe`, ``judgeforge recipe keys``).
- ``choices``: allowed values, or a callable returning them (read at load time, so a registry
  filled by plugins is seen).
- ``check`` and ``expected``: a predicate on the parsed value and what it expects (see
  :func:`at_least`); ``expected`` also words the wrong-type message.
- ``parse``: a callable that turns the raw value into the field's value itself, raising
  :class:`recipes.schema.DataError` (for mappings with a syntax of their own).
- ``options_of``: the name of a sibling field whose value decides this field's schema (backend
  options depend on ``backend``); the ``options_of`` resolver passed to :func:`load` is called as
  ``resolver(sibling_value, raw_value, key_path)`` and returns the parsed value or raises
  ``DataError``. Without a resolver the declared type is used.
- ``key``: the YAML key when it differs from the field name; ``yaml: False``: not a YAML key
  (such as ``path``, the file a recipe was read from).

``None`` for a list or mapping field means empty; a single item where a list is expected stands
for a one-item list.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from recipes.schema import DataError


__all__ = [
    "Problems",
    "RecipeError",
    "Resolvers",
    "at_least",
    "describe",
    "known_keys",
    "load",
    "non_empty",
    "parse_into",
    "read_yaml",
]

T = TypeVar("T")
Resolvers = Mapping[str, Callable[[Any, Any, str], Any]]
_BAD = object()  # a value that could not be parsed (its problem is recorded)
_NONE = type(None)


class RecipeError(DataError):
    """Every problem found in a recipe, reported together (the first one fills the fields)."""

    def __init__(self, problems: list[DataError]):
        ValueError.__init__(self, "\n".join(str(p) for p in problems))
        first = problems[0]
        self.file, self.row, self.field, self.expected, self.got = (
            first.file,
            first.row,
            first.field,
            first.expected,
            first.got,
        )
        self.problems = list(problems)


class Problems:
    """The problems found in one file, each a :class:`DataError` naming the file and key path.

    Args:
        file: the recipe file (first part of every message).
        row: a position inside the file that every key path is relative to (``sources[2]``).
        item_rows: report a problem inside a list item as ``file:<list>[i]: field '<key>'``
            (the data side's wording: category and source files) instead of one dotted path.
        error: the :class:`RecipeError` subclass :meth:`raise_if_any` raises.
        hint: appended to the unknown-key message (e.g. where the keys are described).
    """

    def __init__(
        self,
        file: str,
        row: str | None = None,
        *,
        item_rows: bool = False,
        error: type[RecipeError] = RecipeError,
        hint: str = "",
    ):
        self.file, self.row, self.item_rows, self.error, self.hint = str(file), row, item_rows, error, hint
        self.items: list[DataError] = []

    def add(self, path: str, expected: str, got: Any) -> None:
        """Record that the value at key ``path`` is not what was ``expected``."""
        row, field = self.row, path or "<root>"
        if self.item_rows and row is None and "]" in path:
            end = path.index("]") + 1
            row, field = path[:end], path[end:].lstrip(".") or "<item>"
        self.items.append(DataError(self.file, row, field, expected, got))

    def extend(self, error: DataError, path: str = "") -> None:
        """Record ``error`` (or each of its ``problems``) under key ``path``."""
        for problem in getattr(error, "problems", None) or [error]:
            field = str(problem.field)
            inside = not path or field == path or field.startswith((f"{path}.", f"{path}["))
            self.add(field if inside else _join(path, field), problem.expected, problem.got)

    def raise_if_any(self) -> None:
        """Raise one error listing every problem, if there is any."""
        if self.items:
            raise self.error(self.items)


# ----------------------------------------------------------------------------------------------
# Field metadata helpers
# ----------------------------------------------------------------------------------------------


def at_least(minimum: int | float, what: str = "an integer") -> dict[str, Any]:
    """Metadata for a number that must be ``>= minimum``: ``field(metadata={**at_least(1), ...})``."""
    return {"check": lambda value: value >= minimum, "expected": f"{what} >= {minimum}"}


def non_empty(what: str = "a non-empty string") -> dict[str, Any]:
    """Metadata for a string that must hold more than blanks."""
    return {"check": lambda value: bool(value.strip()), "expected": what}


# ----------------------------------------------------------------------------------------------
# Walking the fields
# ----------------------------------------------------------------------------------------------


def _yaml_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("yaml", True)]


def _key(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


def known_keys(cls: type) -> list[str]:
    """The YAML keys of dataclass ``cls``, in declaration order."""
    return [_key(f) for f in _yaml_fields(cls)]


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    return get_args(tp) if get_origin(tp) in (Union, types.UnionType) else None


def _type_name(tp: Any) -> str:
    """A short human description of a type (what a wrong-type message expects)."""
    args, origin = _union_args(tp), get_origin(tp)
    if args is not None:
        names = [_type_name(a) for a in args if a is not _NONE]
        return " or ".join(names) + (" or null" if _NONE in args else "")
    if origin is Literal:
        return f"one of {list(get_args(tp))}"
    if origin in (list, tuple):
        return f"a list of {_plural(get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of {_plural(get_args(tp)[1])}" if get_args(tp) else "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, "a value")


def _plural(tp: Any) -> str:
    if tp is Any:
        return "values"
    if dataclasses.is_dataclass(tp):
        return "mappings"
    return {str: "strings", int: "integers", float: "numbers", bool: "booleans"}.get(tp, _type_name(tp))


def _fits(tp: Any, value: Any) -> bool:
    """Whether ``value`` has the shape of ``tp`` (which branch of a union to parse it as)."""
    origin = get_origin(tp)
    if tp is Any:
        return True
    if origin is Literal:
        return value in get_args(tp)
    if origin is dict or dataclasses.is_dataclass(tp):
        return isinstance(value, Mapping)
    if origin in (list, tuple):
        return isinstance(value, list)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(tp, type) and isinstance(value, tp)


def _parse(tp: Any, value: Any, problems: Problems, path: str, resolvers: Resolvers | None, expected: str) -> Any:
    args, origin = _union_args(tp), get_origin(tp)
    if args is not None:
        if value is None and _NONE in args:
            return None
        for option in (a for a in args if a is not _NONE):
            if _fits(option, value):
                return _parse(option, value, problems, path, resolvers, expected)
        problems.add(path, expected or _type_name(tp), value)
        return _BAD
    if dataclasses.is_dataclass(tp):
        return parse_into(tp, value, problems, path, resolvers)
    if origin in (list, tuple):
        item = get_args(tp)[0]
        items = value if isinstance(value, list) else [value]
        parsed = [_parse(item, v, problems, _join(path, i), resolvers, "") for i, v in enumerate(items)]
        if any(p is _BAD for p in parsed):
            return _BAD
        return tuple(parsed) if origin is tuple else parsed
    if origin is dict:
        if not isinstance(value, Mapping):
            problems.add(path, expected or _type_name(tp), value)
            return _BAD
        item = get_args(tp)[1] if get_args(tp) else Any
        parsed = {}
        for key, v in value.items():
            if not isinstance(key, str):
                problems.add(_join(path, str(key)), "a string key (quote it in the YAML)", key)
                parsed[key] = _BAD
            else:
                parsed[key] = _parse(item, v, problems, _join(path, key), resolvers, "")
        return _BAD if any(p is _BAD for p in parsed.values()) else parsed
    if not _fits(tp, value):
        problems.add(path, expected or _type_name(tp), value)
        return _BAD
    return float(value) if tp is float else value


def _field(
    f: dataclasses.Field, tp: Any, value: Any, problems: Problems, path: str, resolvers: Resolvers | None
) -> Any:
    meta = f.metadata
    optional = _NONE in (_union_args(tp) or ())
    expected = meta.get("expected", "")
    if expected and optional:
        expected += " or null"
    if "parse" in meta:
        try:
            return meta["parse"](value)
        except DataError as error:
            problems.extend(error, path)
            return _BAD
    if value is None and not optional:
        origin = get_origin(tp)
        if origin in (list, tuple, dict):
            return {list: [], tuple: (), dict: {}}[origin]
        if not _required(f):
            return _default(f)
    parsed = _parse(tp, value, problems, path, resolvers, expected)
    if parsed is _BAD or parsed is None:
        return parsed
    choices = meta.get("choices")
    choices = choices() if callable(choices) else choices
    if choices is not None and parsed not in choices:
        problems.add(path, f"one of {list(choices)}", value)
        return _BAD
    if "check" in meta and not meta["check"](parsed):
        problems.add(path, expected or "a valid value", value)
        return _BAD
    return parsed


def _unknown(key: Any, keys: list[str], hint: str) -> str:
    """What an unknown key's message expects: the known keys, the closest one, where they are described."""
    close = difflib.get_close_matches(str(key), keys, n=1)
    notes = [f"did you mean '{close[0]}'?"] if close else []
    notes += [f"see {hint}"] if hint else []
    return f"one of the known keys ({', '.join(keys)}" + "".join(f"; {n}" for n in notes) + ")"


def parse_into(
    cls: type[T], data: Any, problems: Problems, path: str = "", resolvers: Resolvers | None = None
) -> T | Any:
    """Build ``cls`` from mapping ``data`` at key ``path``, recording problems; returns the object or a marker.

    The object is built only when its part of the data had no problem; callers that need the
    object should check ``problems.items`` (or use :func:`load`).
    """
    keys = known_keys(cls)
    if not isinstance(data, Mapping):
        problems.add(path, f"a mapping with keys among ({', '.join(keys)})", data)
        return _BAD
    before = len(problems.items)
    for key in data:
        if key not in keys:
            problems.add(_join(path, str(key)), _unknown(key, keys, problems.hint), key)
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    deferred = []
    for f in _yaml_fields(cls):
        at = _join(path, _key(f))
        if _key(f) not in data:
            if _required(f):
                help_text = f.metadata.get("help", "")
                problems.add(at, "this required key" + (f" ({help_text})" if help_text else ""), None)
            continue
        if "options_of" in f.metadata and resolvers and "options_of" in resolvers:
            deferred.append((f, at))
            continue
        values[f.name] = _field(f, hints[f.name], data[_key(f)], problems, at, resolvers)
    for f, at in deferred:
        sibling = f.metadata["options_of"]
        chosen = values.get(sibling, _default(next(g for g in dataclasses.fields(cls) if g.name == sibling)))
        try:
            values[f.name] = resolvers["options_of"](chosen, data[_key(f)], at)
        except DataError as error:
            problems.extend(error, at)
    if len(problems.items) > before:
        return _BAD
    try:
        return cls(**values)
    except DataError as error:  # the dataclass's own checks (__post_init__)
        problems.extend(error, path)
        return _BAD


def load(
    cls: type[T],
    data: Any,
    file: str,
    *,
    row: str | None = None,
    item_rows: bool = False,
    resolvers: Resolvers | None = None,
    error: type[RecipeError] = RecipeError,
    hint: str = "",
) -> T:
    """Build ``cls`` from loaded YAML; raise one ``error`` listing every problem (see :class:`Problems`)."""
    problems = Problems(file, row, item_rows=item_rows, error=error, hint=hint)
    built = parse_into(cls, data, problems, "", resolvers)
    problems.raise_if_any()
    return built


def read_yaml(path: str | Path, what: str) -> Any:
    """The data of YAML file ``path`` (``yaml.safe_load``), or a :class:`DataError` naming ``what`` it should be."""
    file = Path(path)
    if not file.is_file():
        raise DataError(str(path), None, "recipe", f"an existing {what} YAML file", str(path))
    try:
        with open(file, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        row = mark.line + 1 if mark is not None else None
        raise DataError(str(path), row, "<yaml>", "valid YAML", str(error).splitlines()[0]) from None


# ----------------------------------------------------------------------------------------------
# Describing the keys
# ----------------------------------------------------------------------------------------------


def describe(cls: type, indent: str = "") -> str:
    """Every YAML key of ``cls`` with its type, default and help, nested dataclasses indented."""
    hints = get_type_hints(cls)
    lines = []
    for f in _yaml_fields(cls):
        tp = hints[f.name]
        shown = f.metadata.get("expected") or _type_name(tp)
        if f.metadata.get("expected") and _NONE in (_union_args(tp) or ()):
            shown += " or null"
        default = _default(f)
        if _required(f):
            default = "required"
        else:
            default = "defaults below" if dataclasses.is_dataclass(default) else f"default {default!r}"
        help_text = f.metadata.get("help", "")
        choices = f.metadata.get("choices")
        choices = choices() if callable(choices) else choices
        if choices is not None:
            help_text += f" (one of {', '.join(map(str, choices))})"
        lines.append(f"{indent}{_key(f)}: {shown}; {default}" + (f". {help_text}" if help_text else ""))
        own_syntax = "parse" in f.metadata and not dataclasses.is_dataclass(_default(f))  # e.g. filters
        for inner in [] if own_syntax else _nested(tp):
            lines.append(describe(inner, indent + "  "))
    return "\n".join(lines)


def _nested(tp: Any) -> list[type]:
    if dataclasses.is_dataclass(tp):
        return [tp]
    return [inner for arg in typing.get_args(tp) for inner in _nested(arg)]
