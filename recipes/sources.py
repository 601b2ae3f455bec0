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
from recipes.source_config import (
    EMBEDDED_DIR,
    KINDS,
    SOURCE_FUNCTIONS,
    RowFilter,
    SourceConfig,
    parse_source,
    register_source_function,
)
from recipes.source_functions import gptfuzz_prompts


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

OnBadRow = Literal["error", "skip"]
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
        if not rows:  # an empty or header-only file is a mistake, not a source that happens to be empty
            raise DataError(
                str(path), None, "<file>", f"at least one row ({source.kind} source '{source.name}')", "no rows"
            )
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
