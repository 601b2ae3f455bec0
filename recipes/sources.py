"""Source loaders: turn a local file or a hub data set into validated judgment examples.

A source is a mapping, listed under a category's ``sources:`` or inline in a data recipe::

    - name: xstest
      kind: csv                       # embedded | csv | json | jsonl | parquet | hub
      path: [xstest/a.csv, xstest/b.csv]   # relative to --data-root (hub: hub_id, config, split)
      columns: {prompt: prompt, response: completion, label: final_label, group: prompt,
                meta.type: type, context.reference: answer}
      label_map: {"1_full_compliance": 0, "2_full_refusal": 1}
      filters: [{column: type, in: [homonyms, definitions]}]
      annotations: [annotation_1, annotation_2]   # several human labels, majority vote
      function: gptfuzz_prompts                   # a registered Python function (rare)
      label_origin: human             # human | machine | curated (embedded default) | unspecified
      reader: {comment_prefix: "#"}   # csv: comment_prefix, delimiter, quoting; json: records

A ``path`` may be a glob (``latent_jailbreak/**/*.json``): its matches are read in sorted order.

Every row goes through :func:`recipes.schema.validate_example`. A column missing from the whole
file or a missing file is a configuration error and always raises; a bad row raises too, after the
whole file was checked (the first few problems are reported together), unless ``on_bad_row="skip"``
where it is skipped and counted with its reason. Rows removed by ``filters`` are counted as well:
nothing is dropped silently.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from recipes.loader import Problems, non_empty, parse_into
from recipes.readers import ERROR_KEY, read_csv, read_hub, read_json, read_jsonl, read_parquet, resolve_path, text_key
from recipes.schema import DataError, validate_example
from recipes.source_functions import SOURCE_FUNCTIONS, gptfuzz_prompts, register_source_function


__all__ = [
    "EMBEDDED_DIR",
    "KINDS",
    "SOURCE_FUNCTIONS",
    "BadRowsError",
    "LoadedSource",
    "RowFilter",
    "SourceConfig",
    "SourceReport",
    "gptfuzz_prompts",
    "load_source",
    "parse_source",
    "register_source_function",
]

logger = logging.getLogger(__name__)

EMBEDDED_DIR = Path(__file__).parent / "embedded"
KINDS = ("embedded", "csv", "json", "jsonl", "parquet", "hub")
OnBadRow = Literal["error", "skip"]
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
_EMBEDDED_COLUMNS = {key: key for key in ("prompt", "response", "label", "id", "group", "context")}
_EMBEDDED_KEYS = {"id", "prompt", "response", "label", "group", "context", "explanation", "annotations"}
_SHOWN_PROBLEMS = 5
_STRINGS = {
    "check": lambda items: bool(items) and all(item.strip() for item in items),
    "expected": "a non-empty string or a list of non-empty strings",
}


class BadRowsError(DataError):
    """Several bad rows in one source, reported together (the first one leads the message)."""

    def __init__(self, errors: Sequence[DataError], total: int):
        first = errors[0]
        super().__init__(first.file, first.row, first.field, first.expected, first.got)
        lines = [str(error) for error in errors[:_SHOWN_PROBLEMS]]
        if total > len(lines):
            lines.append(f"... and {total - len(lines)} more bad rows (use --on-bad-row skip to skip and count them)")
        self.args = ("\n".join(lines),)
        self.errors, self.total = list(errors), total


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


@dataclass
class SourceReport:
    """What loading one source did: rows read, filtered, skipped (with reasons) and kept."""

    category: str
    name: str
    kind: str
    location: str
    rows_read: int = 0
    filtered: int = 0
    skipped: int = 0
    loaded: int = 0
    filters: list[str] = field(default_factory=list)
    filtered_by: dict[str, int] = field(default_factory=dict)
    label_origin: str = "unspecified"
    skip_reasons: dict[str, int] = field(default_factory=dict)
    skipped_rows: list[str] = field(default_factory=list)


@dataclass
class LoadedSource:
    """The validated examples of one source and its report."""

    config: SourceConfig
    examples: list[dict]
    report: SourceReport


# ----------------------------------------------------------------------------------------------
# Parsing source mappings
# ----------------------------------------------------------------------------------------------


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


def _expand(names: Sequence[str], data_root: str | Path | None) -> list[tuple[str, Path]]:
    """``(name as configured, path)`` per file; a glob expands to its sorted matches (none is an error later)."""
    files = []
    for name in names:
        if any(ch in name for ch in "*?["):
            pattern = Path(name).expanduser()
            root = Path(pattern.anchor) if pattern.is_absolute() else resolve_path(".", data_root)
            relative = str(pattern.relative_to(pattern.anchor)) if pattern.anchor else name
            matches = sorted(p for p in root.glob(relative) if p.is_file())
            files += [(str(p.relative_to(root)), p) for p in matches] or [(name, resolve_path(name, data_root))]
        else:
            files.append((name, resolve_path(name, data_root)))
    return files


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


def _read_hub(source: SourceConfig, data_root: str | Path | None) -> tuple[str, list[dict]]:
    display = f"hub:{source.hub_id}" + "".join(f"[{p}]" for p in (source.config, source.split) if p)
    try:
        rows = read_hub(source.hub_id, source.config, source.split, source.revision, data_root)
    except Exception as error:  # any loader failure: name the source and what was asked for
        expected = "a data set datasets.load_dataset can open (hub id or local folder; no hub is reachable offline)"
        raise DataError(source.origin, source.where, "hub_id", expected, f"{display}: {error}") from error
    return display, rows


def _read_files(
    source: SourceConfig, category: str, data_root: str | Path | None
) -> list[tuple[str, str, list, list]]:
    """``[(file shown in errors, file kept in meta, rows, 1-based row numbers)]`` for every file of the source.

    Errors name the full path so it can be opened; the examples keep the path as configured (no
    machine-specific prefix) in ``meta["origin"]``.
    """
    if source.kind == "hub":
        display, rows = _read_hub(source, data_root)
        return [(display, display, rows, list(range(1, len(rows) + 1)))]
    if source.kind == "embedded":
        names = list(source.paths) or [f"{category}.jsonl"]
        paths = [EMBEDDED_DIR / p for p in names]
        names = [f"embedded/{p}" for p in names]
    else:
        names, paths = map(list, zip(*_expand(source.paths, data_root))) if source.paths else ([], [])
    tables = []
    for path, name in zip(paths, names):
        if not path.is_file():
            root = "the embedded data folder" if source.kind == "embedded" else f"--data-root ({data_root})"
            raise DataError(source.origin, source.where, "path", f"an existing file relative to {root}", str(path))
        if source.kind in ("embedded", "jsonl"):
            rows, numbers = read_jsonl(path)
        else:
            rows = {"csv": read_csv, "json": read_json, "parquet": read_parquet}[source.kind](path, **source.reader)
            numbers = list(range(1, len(rows) + 1))
        tables.append((str(path), name, rows, numbers))
    return tables


# ----------------------------------------------------------------------------------------------
# Rows -> examples
# ----------------------------------------------------------------------------------------------


def _check_columns(source: SourceConfig, file: str, rows: list) -> None:
    """A column that no row has is a configuration error: name it and the columns that exist."""
    present: set[str] = set()
    for row in rows:
        if isinstance(row, dict) and ERROR_KEY not in row:
            present.update(row)
    if not present:  # no readable row: each one is reported as a bad row instead
        return
    wanted = [(f"columns.{key}", column) for key, column in source.columns.items()]
    wanted += [("annotations", column) for column in source.annotations]
    wanted += [("filters", f.column) for f in source.filters]
    if source.kind == "embedded":
        wanted += [(key, key) for key in ("prompt", "response", "label") if key not in source.columns]
    for what, column in wanted:
        if column not in present:
            field_name = what.removeprefix("columns.")
            expected = f"a column '{column}' ({what} of source '{source.name}')"
            raise DataError(file, 1, field_name, expected, f"columns {sorted(map(str, present))[:20]}")


def _map_label(value: Any, source: SourceConfig, file: str, row: int, field_name: str, column: str) -> int:
    key = text_key(value) if value is not None else ""
    if source.label_map:
        if key in source.label_map:
            return source.label_map[key]
        expected = f"one of {sorted(source.label_map)} (label_map of column '{column}')"
        raise DataError(file, row, field_name, expected, value)
    if key in ("0", "1"):
        return int(key)
    raise DataError(file, row, field_name, f"0 or 1 in column '{column}' (or give a label_map)", value)


def _text_or_messages(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return text_key(value)
    return value


def _row_to_example(source: SourceConfig, category: str, raw: Any, file: str, number: int, short: str) -> dict:
    if not isinstance(raw, dict):
        raise DataError(file, number, "<row>", "a mapping of columns", raw)
    if ERROR_KEY in raw:
        raise raw[ERROR_KEY]
    columns = {**_EMBEDDED_COLUMNS, **source.columns} if source.kind == "embedded" else source.columns
    example: dict[str, Any] = {"category": category, "source": source.name}
    context: dict[str, Any] = {}
    meta: dict[str, Any] = {"origin": f"{short}:{number}", "label_origin": source.label_origin}
    for key, column in columns.items():
        value = raw.get(column)
        if key.startswith("context."):
            if value not in (None, ""):
                context[key.split(".", 1)[1]] = value
        elif key.startswith("meta."):
            if value is not None:
                meta[key.split(".", 1)[1]] = value
        elif key == "label":
            example["label"] = _map_label(value, source, file, number, "label", column)
        elif key in ("id", "group"):
            example[key] = text_key(value) if value not in (None, "") else None
        elif key in ("context", "meta"):
            if value is not None and not isinstance(value, Mapping):
                raise DataError(file, number, key, f"a mapping in column '{column}'", value)
            (context if key == "context" else meta).update(value or {})
        else:
            example[key] = _text_or_messages(value)
    if source.kind == "embedded":
        if raw.get("explanation"):
            meta["explanation"] = raw["explanation"]
        for key in sorted(set(raw) - _EMBEDDED_KEYS):
            meta[key] = raw[key]
        if raw.get("annotations"):
            example["annotations"] = raw["annotations"]
    if source.annotations:
        votes = []
        for column in source.annotations:
            value = raw.get(column)
            if value not in (None, ""):
                votes.append(_map_label(value, source, file, number, "annotations", column))
        if "label" not in example:
            positives = sum(votes)
            if not votes or positives * 2 == len(votes):
                expected = f"a strict majority among annotations {list(source.annotations)}"
                raise DataError(file, number, "label", expected, votes)
            example["label"] = int(positives * 2 > len(votes))
        example["annotations"] = votes
        if votes:
            meta["agreement"] = round(sum(v == example["label"] for v in votes) / len(votes), 4)
            meta["annotators"] = len(votes)
    example["context"] = context or None
    example["meta"] = meta
    return validate_example(example, file, number)


def load_source(
    source: SourceConfig,
    category: str,
    *,
    data_root: str | Path | None = None,
    on_bad_row: OnBadRow = "error",
) -> LoadedSource:
    """Read one source of ``category`` into validated examples.

    Args:
        source: the parsed source.
        category: the category the examples belong to.
        data_root: folder relative ``path``s and local ``hub_id`` folders are read from.
        on_bad_row: ``error`` (raise after checking every row) or ``skip`` (skip and count).

    Raises:
        DataError: a missing file or column, or (with ``error``) every bad row, the first few named.
    """
    if on_bad_row not in ("error", "skip"):
        raise DataError(source.origin, source.where, "on_bad_row", "'error' or 'skip'", on_bad_row)
    location = f"embedded/{category}.jsonl" if source.kind == "embedded" and not source.paths else source.location
    report = SourceReport(category, source.name, source.kind, location, label_origin=source.label_origin)
    report.filters = [f.describe() for f in source.filters]
    examples: list[dict] = []
    problems: list[DataError] = []
    reasons: Counter[str] = Counter()
    for file, short, rows, numbers in _read_files(source, category, data_root):
        if source.function:
            built = SOURCE_FUNCTIONS[source.function](rows, source=source, data_root=data_root, file=file)
            if len(built) != len(rows):
                raise DataError(source.origin, source.where, "function", "as many rows out as in", len(built))
            rows = built
        _check_columns(source, file, rows)
        report.rows_read += len(rows)
        for raw, number in tqdm(
            zip(rows, numbers),
            total=len(rows),
            desc=f"{category}/{source.name}",
            unit="row",
            leave=False,
            disable=len(rows) < 1000,
        ):
            failed = (
                None
                if not isinstance(raw, dict) or ERROR_KEY in raw
                else next((f for f in source.filters if not f.keep(raw.get(f.column))), None)
            )
            if failed is not None:
                report.filtered += 1
                report.filtered_by[failed.describe()] = report.filtered_by.get(failed.describe(), 0) + 1
                continue
            try:
                examples.append(_row_to_example(source, category, raw, file, number, short))
            except DataError as error:
                problems.append(error)
                reasons[f"{source.name}: field '{error.field}': expected {error.expected}"] += 1
    if problems and on_bad_row == "error":
        raise BadRowsError(problems[:_SHOWN_PROBLEMS], len(problems))
    report.skipped = len(problems)
    report.skip_reasons = dict(reasons.most_common())
    report.skipped_rows = [str(p) for p in problems[:20]]
    report.loaded = len(examples)
    if problems:
        logger.warning("%s/%s: skipped %d bad rows (%s)", category, source.name, len(problems), report.skip_reasons)
    logger.info(
        "%s/%s: %d rows read, %d filtered, %d loaded",
        category,
        source.name,
        report.rows_read,
        report.filtered,
        report.loaded,
    )
    return LoadedSource(source, examples, report)
