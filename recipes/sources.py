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

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

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
_FILTER_OPS = ("equals", "not_equals", "in", "not_in", "present")
LABEL_ORIGINS = ("human", "machine", "curated", "unspecified")
_READER_OPTIONS = {"csv": {"comment_prefix": str, "delimiter": str, "quoting": bool}, "json": {"records": str}}
_EMBEDDED_COLUMNS = {key: key for key in ("prompt", "response", "label", "id", "group", "context")}
_EMBEDDED_KEYS = {"id", "prompt", "response", "label", "group", "context", "explanation", "annotations"}
_SHOWN_PROBLEMS = 5


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

    name: str = field(metadata={"help": "name a data recipe selects the source by"})
    kind: str = field(metadata={"help": "embedded, csv, json, jsonl, parquet or hub"})
    paths: tuple[str, ...] = field(default=(), metadata={"help": "file(s), relative to --data-root"})
    hub_id: str = field(default="", metadata={"help": "data set id for datasets.load_dataset, or a local folder"})
    config: str | None = field(default=None, metadata={"help": "hub data set configuration"})
    split: str = field(default="train", metadata={"help": "hub split (datasets syntax, e.g. 'a+b')"})
    revision: str | None = field(default=None, metadata={"help": "hub revision (commit or tag)"})
    columns: dict[str, str] = field(default_factory=dict, metadata={"help": "schema field -> source column"})
    label_map: dict[str, int] = field(default_factory=dict, metadata={"help": "source label value -> 0/1"})
    filters: tuple[RowFilter, ...] = field(default=(), metadata={"help": "rows to keep"})
    annotations: tuple[str, ...] = field(default=(), metadata={"help": "columns of individual human labels"})
    function: str = field(default="", metadata={"help": "registered function run on the raw rows"})
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "options for the function"})
    assign_split: str | None = field(default=None, metadata={"help": "put every row of this source in this split"})
    label_origin: str = field(default="unspecified", metadata={"help": "who gave the labels: human, machine, curated"})
    reader: dict[str, Any] = field(default_factory=dict, metadata={"help": "file reader options (see module doc)"})
    description: str = field(default="", metadata={"help": "free text"})
    origin: str = field(default="<memory>", metadata={"help": "file that declared the source"})
    where: str = field(default="sources[0]", metadata={"help": "position of the declaration in that file"})
    raw: dict[str, Any] = field(default_factory=dict, metadata={"help": "the mapping as written"})

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


def _string_list(value: Any, origin: str, where: str, key: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise DataError(origin, where, key, "a non-empty string or a list of non-empty strings", value)
    return tuple(items)


def _parse_columns(value: Any, origin: str, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DataError(origin, where, "columns", "a mapping of schema field -> source column", value)
    columns = {}
    for key, column in value.items():
        base, dotted = str(key).split(".", 1)[0], "." in str(key)
        if base not in _FIELDS or (dotted and base not in ("context", "meta")):
            raise DataError(
                origin, where, f"columns.{key}", f"a field among {list(_FIELDS)} or context.<k>/meta.<k>", key
            )
        if not isinstance(column, str) or not column.strip():
            raise DataError(origin, where, f"columns.{key}", "a source column name", column)
        columns[str(key)] = column
    return columns


def _parse_label_map(value: Any, origin: str, where: str) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not value:
        raise DataError(origin, where, "label_map", "a mapping of source value -> 0/1", value)
    mapping = {}
    for key, label in value.items():
        if isinstance(key, bool):
            raise DataError(origin, where, "label_map", "quoted keys (YAML reads bare yes/no/true as booleans)", key)
        if isinstance(label, bool) or label not in (0, 1):
            raise DataError(origin, where, f"label_map.{key}", "0 or 1", label)
        mapping[text_key(key)] = int(label)
    return mapping


def _parse_filters(value: Any, origin: str, where: str) -> tuple[RowFilter, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DataError(origin, where, "filters", "a list of {column: C, <op>: value}", value)
    filters = []
    for i, item in enumerate(value):
        at = f"filters[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("column"), str):
            raise DataError(origin, where, at, "a mapping with 'column' and one of " + "/".join(_FILTER_OPS), item)
        ops = [op for op in _FILTER_OPS if op in item]
        extra = sorted(set(item) - set(_FILTER_OPS) - {"column"})
        if len(ops) != 1 or extra:
            raise DataError(origin, where, at, "exactly one of " + "/".join(_FILTER_OPS), sorted(item))
        op, raw = ops[0], item[ops[0]]
        if op in ("in", "not_in"):
            if not isinstance(raw, list) or not raw:
                raise DataError(origin, where, f"{at}.{op}", "a non-empty list of values", raw)
            values = tuple(text_key(v) for v in raw)
        elif op == "present" and not isinstance(raw, bool):
            raise DataError(origin, where, f"{at}.{op}", "true (keep rows with a value) or false", raw)
        else:
            values = (text_key(raw),)
        filters.append(RowFilter(column=item["column"], op=op, values=values))
    return tuple(filters)


def _parse_reader(value: Any, kind: str, origin: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    known = _READER_OPTIONS.get(kind, {})
    if not isinstance(value, dict):
        raise DataError(origin, where, "reader", f"a mapping with keys among {sorted(known)}", value)
    for key, option in value.items():
        if key not in known:
            raise DataError(origin, where, f"reader.{key}", f"one of {sorted(known)} for kind '{kind}'", key)
        if not isinstance(option, known[key]) or (key == "delimiter" and len(option) != 1):
            raise DataError(origin, where, f"reader.{key}", f"a {known[key].__name__}", option)
    return dict(value)


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
    """Parse and check one source mapping; unknown keys are rejected.

    Args:
        data: the mapping as written in a category file or a data recipe.
        origin: the file it was written in (named in errors).
        where: its position there, e.g. ``sources[1]`` or ``categories[0].sources[2]``.

    Raises:
        DataError: naming the file, the position and the key that is wrong.
    """
    if not isinstance(data, dict):
        raise DataError(origin, where, "<source>", "a mapping with name and kind", data)
    unknown = sorted(set(data) - set(_SOURCE_KEYS))
    if unknown:
        raise DataError(origin, where, unknown[0], f"one of {list(_SOURCE_KEYS)}", unknown[0])
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise DataError(origin, where, "name", "a non-empty string", name)
    kind = data.get("kind")
    if kind not in KINDS:
        raise DataError(origin, where, "kind", f"one of {list(KINDS)}", kind)
    paths: tuple[str, ...] = ()
    if data.get("path") is not None:
        paths = _string_list(data["path"], origin, where, "path")
    elif kind in ("csv", "json", "jsonl", "parquet"):
        raise DataError(origin, where, "path", f"a file (or list of files) for kind '{kind}'", None)
    hub_id = data.get("hub_id") or ""
    if kind == "hub" and (not isinstance(hub_id, str) or not hub_id.strip()):
        raise DataError(origin, where, "hub_id", "a data set id (owner/name) or a local folder", hub_id)
    columns = _parse_columns(data.get("columns"), origin, where)
    label_map = _parse_label_map(data.get("label_map"), origin, where)
    annotations = _string_list(data["annotations"], origin, where, "annotations") if data.get("annotations") else ()
    if kind != "embedded":
        for required in ("prompt", "response"):
            if required not in columns:
                raise DataError(origin, where, f"columns.{required}", "the source column holding it", None)
        if "label" not in columns and not annotations:
            raise DataError(origin, where, "columns.label", "a label column or a list of annotations", None)
    function = data.get("function") or ""
    if function and function not in SOURCE_FUNCTIONS:
        raise DataError(origin, where, "function", f"one of {sorted(SOURCE_FUNCTIONS)}", function)
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise DataError(origin, where, "options", "a mapping", options)
    assign_split = data.get("assign_split")
    if assign_split is not None and assign_split not in SPLIT_NAMES:
        raise DataError(origin, where, "assign_split", f"one of {list(SPLIT_NAMES)}", assign_split)
    label_origin = data.get("label_origin") or ("curated" if kind == "embedded" else "unspecified")
    if label_origin not in LABEL_ORIGINS:
        raise DataError(origin, where, "label_origin", f"one of {list(LABEL_ORIGINS)}", label_origin)
    reader = _parse_reader(data.get("reader"), kind, origin, where)
    split = data.get("split", "train")
    if not isinstance(split, str) or not split.strip():
        raise DataError(origin, where, "split", "a split name such as 'train'", split)
    return SourceConfig(
        name=name,
        kind=kind,
        paths=paths,
        hub_id=hub_id,
        config=data.get("config"),
        split=split,
        revision=data.get("revision"),
        columns=columns,
        label_map=label_map,
        filters=_parse_filters(data.get("filters"), origin, where),
        annotations=annotations,
        function=function,
        options=options,
        assign_split=assign_split,
        label_origin=label_origin,
        reader=reader,
        description=str(data.get("description") or ""),
        origin=origin,
        where=where,
        raw=dict(data),
    )


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
            raise DataError(file, 1, field_name, expected, f"columns {sorted(present)[:20]}")


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
