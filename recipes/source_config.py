"""Source configs: the mapping a category or data recipe lists under ``sources:``, parsed and checked.

The schema and its checks live here, apart from the loading in :mod:`recipes.sources`, so that
registered source functions (:mod:`recipes.source_functions`) can name :class:`SourceConfig` without
importing the loaders that call them. The YAML is documented in :mod:`recipes.sources`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recipes.loader import Problems, non_empty, parse_into
from recipes.readers import text_key
from recipes.schema import DataError


__all__ = [
    "EMBEDDED_DIR",
    "KINDS",
    "LABEL_ORIGINS",
    "SOURCE_FUNCTIONS",
    "RowFilter",
    "SourceConfig",
    "parse_source",
    "register_source_function",
]

SourceFunction = Callable[..., list[dict]]
SOURCE_FUNCTIONS: dict[str, SourceFunction] = {}


def register_source_function(name: str) -> Callable[[SourceFunction], SourceFunction]:
    """Register ``fn(rows, *, source, data_root, file) -> rows`` under ``name``."""

    def decorator(fn: SourceFunction) -> SourceFunction:
        SOURCE_FUNCTIONS[name] = fn
        return fn

    return decorator


EMBEDDED_DIR = Path(__file__).parent / "embedded"
KINDS = ("embedded", "csv", "json", "jsonl", "parquet", "hub")
SPLIT_NAMES = ("train", "validation", "test")
_FIELDS = ("prompt", "response", "label", "id", "group", "context", "meta")
_SOURCE_KEYS = (
    "name",
    "kind",
    "description",
    "path",
    "hub_id",
    "config",
    "split",
    "revision",
    "columns",
    "label_map",
    "filters",
    "annotations",
    "function",
    "options",
    "assign_split",
    "label_origin",
    "reader",
)
_HERE = "<source>"  # parse helpers' file: the loader names the real one
_FILTER_OPS = ("equals", "not_equals", "in", "not_in", "present")
LABEL_ORIGINS = ("human", "machine", "curated", "unspecified")
_READER_OPTIONS = {"csv": {"comment_prefix": str, "delimiter": str, "quoting": bool}, "json": {"records": str}}
_STRINGS = {
    "check": lambda items: bool(items) and all(item.strip() for item in items),
    "expected": "a non-empty string or a list of non-empty strings",
}


@dataclass(frozen=True)
class RowFilter:
    """Keep a row only when ``column`` compares true (values compared as text, so YAML ``1`` = CSV ``"1"``)."""

    column: str = field(metadata={"help": "source column to test"})
    op: str = field(metadata={"help": "equals, not_equals, in or not_in"})
    values: tuple[str, ...] = field(metadata={"help": "the value(s) to compare with"})

    def keep(self, value: Any) -> bool:
        """Whether a row whose column holds ``value`` passes the filter (``present``: not null, not blank)."""
        if self.op == "present":
            return (value is not None and text_key(value) != "") == (self.values[0] == "true")
        hit = text_key(value) in self.values
        return hit if self.op in ("equals", "in") else not hit

    def describe(self) -> str:
        """A short human-readable form for the data card."""
        shown = self.values[0] if self.op in ("equals", "not_equals", "present") else list(self.values)
        return f"{self.column} {self.op} {shown}"


@dataclass(frozen=True)
class SourceConfig:
    """One data source of a category, parsed from its mapping (see the module docstring)."""

    name: str = field(metadata={"help": "name a data recipe selects the source by", **non_empty()})
    kind: str = field(metadata={"help": "where the rows come from", "choices": KINDS})
    paths: tuple[str, ...] = field(
        default=(), metadata={"help": "file(s), relative to --data-root", "key": "path", **_STRINGS}
    )
    hub_id: str = field(default="", metadata={"help": "data set id for datasets.load_dataset, or a local folder"})
    config: str | None = field(default=None, metadata={"help": "hub data set configuration"})
    split: str = field(
        default="train",
        metadata={"help": "hub split (datasets syntax, e.g. 'a+b')", **non_empty("a split name such as 'train'")},
    )
    revision: str | None = field(default=None, metadata={"help": "hub revision (commit or tag)"})
    columns: dict[str, str] = field(
        default_factory=dict, metadata={"help": "schema field -> source column", "parse": lambda v: _parse_columns(v)}
    )
    label_map: dict[str, int] = field(
        default_factory=dict, metadata={"help": "source label value -> 0/1", "parse": lambda v: _parse_label_map(v)}
    )
    filters: tuple[RowFilter, ...] = field(
        default=(), metadata={"help": "rows to keep: {column: C, <op>: value}", "parse": lambda v: _parse_filters(v)}
    )
    annotations: tuple[str, ...] = field(
        default=(), metadata={"help": "columns of individual human labels", **_STRINGS}
    )
    function: str = field(
        default="",
        metadata={
            "help": "registered function run on the raw rows",
            "check": lambda name: not name or name in SOURCE_FUNCTIONS,
            "expected": "a registered source function (recipes/source_functions.py)",
        },
    )
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "options for the function"})
    assign_split: str | None = field(
        default=None, metadata={"help": "put every row of this source in this split", "choices": SPLIT_NAMES}
    )
    label_origin: str = field(
        default="",
        metadata={
            "help": "who gave the labels: human, machine, curated (embedded default) or unspecified",
            "check": lambda v: not v or v in LABEL_ORIGINS,
            "expected": f"one of {list(LABEL_ORIGINS)}",
        },
    )
    reader: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "file reader options: csv comment_prefix/delimiter/quoting, json records"},
    )
    description: str = field(default="", metadata={"help": "free text"})
    origin: str = field(default="<memory>", metadata={"help": "file that declared the source", "yaml": False})
    where: str = field(
        default="sources[0]", metadata={"help": "position of the declaration in that file", "yaml": False}
    )
    raw: dict[str, Any] = field(default_factory=dict, metadata={"help": "the mapping as written", "yaml": False})

    @property
    def location(self) -> str:
        """Where the data comes from, for the data card."""
        if self.kind == "hub":
            parts = [self.hub_id] + [p for p in (self.config, self.split) if p]
            return "hub:" + "/".join(parts)
        return ", ".join(self.paths) if self.paths else "embedded/<category>.jsonl"


def _parse_columns(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DataError(_HERE, None, "columns", "a mapping of schema field -> source column", value)
    columns = {}
    for key, column in value.items():
        base, dotted = str(key).split(".", 1)[0], "." in str(key)
        if base not in _FIELDS or (dotted and base not in ("context", "meta")):
            raise DataError(
                _HERE, None, f"columns.{key}", f"a field among {list(_FIELDS)} or context.<k>/meta.<k>", key
            )
        if not isinstance(column, str) or not column.strip():
            raise DataError(_HERE, None, f"columns.{key}", "a source column name", column)
        columns[str(key)] = column
    return columns


def _parse_label_map(value: Any) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not value:
        raise DataError(_HERE, None, "label_map", "a mapping of source value -> 0/1", value)
    mapping = {}
    for key, label in value.items():
        if isinstance(key, bool):
            raise DataError(_HERE, None, "label_map", "quoted keys (YAML reads bare yes/no/true as booleans)", key)
        if isinstance(label, bool) or label not in (0, 1):
            raise DataError(_HERE, None, f"label_map.{key}", "0 or 1", label)
        mapping[text_key(key)] = int(label)
    return mapping


def _parse_filters(value: Any) -> tuple[RowFilter, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DataError(_HERE, None, "filters", "a list of {column: C, <op>: value}", value)
    filters = []
    for i, item in enumerate(value):
        at = f"filters[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("column"), str):
            raise DataError(_HERE, None, at, "a mapping with 'column' and one of " + "/".join(_FILTER_OPS), item)
        ops = [op for op in _FILTER_OPS if op in item]
        extra = sorted(set(item) - set(_FILTER_OPS) - {"column"})
        if len(ops) != 1 or extra:
            raise DataError(_HERE, None, at, "exactly one of " + "/".join(_FILTER_OPS), sorted(item))
        op, raw = ops[0], item[ops[0]]
        if op in ("in", "not_in"):
            if not isinstance(raw, list) or not raw:
                raise DataError(_HERE, None, f"{at}.{op}", "a non-empty list of values", raw)
            values = tuple(text_key(v) for v in raw)
        elif op == "present" and not isinstance(raw, bool):
            raise DataError(_HERE, None, f"{at}.{op}", "true (keep rows with a value) or false", raw)
        else:
            values = (text_key(raw),)
        filters.append(RowFilter(column=item["column"], op=op, values=values))
    return tuple(filters)


def _check_reader(value: Any, kind: Any, problems: Problems) -> None:
    """The reader options a source's kind knows, each of the right type."""
    if not isinstance(value, dict):
        return  # absent, or a non-mapping the loader has already reported
    known = _READER_OPTIONS.get(kind, {})
    for key, option in value.items():
        if key not in known:
            problems.add(f"reader.{key}", f"one of {sorted(known)} for kind '{kind}'", key)
        elif not isinstance(option, known[key]) or (key == "delimiter" and len(option) != 1):
            expected = "one character" if key == "delimiter" else f"a {known[key].__name__}"
            problems.add(f"reader.{key}", expected, option)


def parse_source(data: Any, *, origin: str = "<memory>", where: str = "sources[0]") -> SourceConfig:
    """Parse and check one source mapping, reporting every unknown key and bad value together.

    Args:
        data: the mapping as written in a category file or a data recipe.
        origin: the file it was written in (named in errors).
        where: its position there, e.g. ``sources[1]`` or ``categories[0].sources[2]``.

    Raises:
        recipes.loader.RecipeError: each problem as ``<origin>:<where>: field '<key>': expected ...``.
    """
    problems = Problems(origin, where, hint="`judgeforge recipe keys source`")
    if not isinstance(data, dict):
        problems.add("<source>", "a mapping with name and kind", data)
        problems.raise_if_any()
    source = parse_into(SourceConfig, data, problems)
    kind = data.get("kind")
    if kind in ("csv", "json", "jsonl", "parquet") and not data.get("path"):
        problems.add("path", f"a file (or list of files) for kind '{kind}'", data.get("path"))
    hub_id = data.get("hub_id") or ""
    if kind == "hub" and (not isinstance(hub_id, str) or not hub_id.strip()):
        problems.add("hub_id", "a data set id (owner/name) or a local folder", hub_id)
    columns = data.get("columns") if isinstance(data.get("columns"), dict) else {}
    if kind in KINDS and kind != "embedded":
        for required in ("prompt", "response"):
            if required not in columns:
                problems.add(f"columns.{required}", "the source column holding it", None)
        if "label" not in columns and not data.get("annotations"):
            problems.add("columns.label", "a label column or a list of annotations", None)
    _check_reader(data.get("reader"), kind, problems)
    problems.raise_if_any()
    origin_default = source.label_origin or ("curated" if kind == "embedded" else "unspecified")
    return dataclasses.replace(source, origin=origin, where=where, raw=dict(data), label_origin=origin_default)


# ----------------------------------------------------------------------------------------------
# Reading files
# ----------------------------------------------------------------------------------------------
