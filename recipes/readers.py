"""File readers for the source loaders: CSV, JSON, JSON Lines, Parquet and ``datasets`` data sets.

Each reader returns the raw rows of one file as dicts, in file order, with no interpretation:
mapping, labels and validation belong to :mod:`recipes.sources`. A JSON Lines line that cannot be
parsed becomes a row holding a :class:`DataError` under :data:`ERROR_KEY`, so it is reported (or
skipped) with the file's other bad rows instead of stopping the read.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recipes.schema import DataError


__all__ = [
    "ERROR_KEY",
    "JsonlLine",
    "JsonlScan",
    "read_csv",
    "read_hub",
    "read_json",
    "read_jsonl",
    "read_jsonl_rows",
    "read_parquet",
    "resolve_path",
    "scan_jsonl",
    "text_key",
]

# A row that could not be read or built carries its DataError under this key.
ERROR_KEY = "__error__"


def resolve_path(path: str | Path, data_root: str | Path | None) -> Path:
    """``path`` itself when absolute (or with no data root), else under ``data_root``."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or data_root is None:
        return candidate
    return Path(data_root).expanduser() / candidate


def read_csv(path: Path) -> list[dict]:
    """Rows of a CSV file with a header (fields may be very long: GPTFuzz answers reach 22k characters)."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def read_json(path: Path) -> list[Any]:
    """Rows of a JSON file holding one array of objects.

    Raises:
        DataError: when the file is not one JSON array (with a hint when it is JSON Lines).
    """
    with open(path, encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as error:
            hint = " (for JSON Lines use kind: jsonl)" if "Extra data" in str(error) else ""
            raise DataError(
                str(path), error.lineno, "<file>", f"one JSON array of objects{hint}", str(error)
            ) from None
    if not isinstance(data, list):
        raise DataError(str(path), None, "<file>", "a JSON array of objects", type(data).__name__)
    return data


@dataclass
class JsonlLine:
    """One non-blank line of a JSON Lines file: its number, and its value or why it is not JSON."""

    number: int
    value: Any = None
    error: DataError | None = None


@dataclass
class JsonlScan:
    """A JSON Lines file read whole: its lines, and what follows the last newline.

    ``json.dumps`` never writes a newline inside a value, so a line that ends in a newline was
    written whole and one that cannot be parsed is corrupt; only the text after the last newline
    can be a write cut short (``torn``). ``good_end`` is the byte offset where that text begins.
    """

    lines: list[JsonlLine] = field(default_factory=list)
    torn: JsonlLine | None = None
    good_end: int = 0
    size: int = 0


def _parse_line(raw: bytes, path: Path, number: int, expected: str, name: str) -> JsonlLine:
    try:
        return JsonlLine(number, json.loads(raw.decode("utf-8")))
    except UnicodeDecodeError as error:
        return JsonlLine(number, error=DataError(str(path), number, name, expected, f"not UTF-8 ({error.reason})"))
    except json.JSONDecodeError as error:
        shown = raw.decode("utf-8", "replace").strip()
        return JsonlLine(number, error=DataError(str(path), number, name, expected, shown[:200] or error.msg))


def scan_jsonl(path: str | Path, *, expected: str = "one JSON object", name: str = "<line>") -> JsonlScan:
    """Every line of a JSON Lines file: the one reader, and its one policy for bad and torn lines.

    A complete line that is not JSON carries its :class:`DataError` (file, line number); the text after
    the last newline is returned as ``torn`` when it does not parse (a whole value that merely lacks
    its newline is an ordinary line). Callers decide what a bad line means: input readers refuse or
    report it, the results store refuses a corrupt line and cuts a torn one off. ``name`` is the
    field the errors name.
    """
    path = Path(path)
    data = path.read_bytes()
    *complete, tail = data.split(b"\n")
    scan = JsonlScan(good_end=len(data) - len(tail), size=len(data))
    for number, raw in enumerate(complete, start=1):
        if raw.strip():
            scan.lines.append(_parse_line(raw, path, number, expected, name))
    if tail.strip():
        last = _parse_line(tail, path, len(complete) + 1, expected, name)
        if last.error is None:
            scan.lines.append(last)
        else:
            scan.torn = last
    return scan


def read_jsonl(path: Path) -> tuple[list[Any], list[int]]:
    """Rows of a JSON Lines file and their line numbers (blank lines are not rows).

    A line that is not JSON (a cut-off last line included) becomes a row holding its error.
    """
    scan = scan_jsonl(path)
    lines = scan.lines + ([scan.torn] if scan.torn else [])
    return [{ERROR_KEY: line.error} if line.error else line.value for line in lines], [line.number for line in lines]


def read_jsonl_rows(
    path: str | Path, *, expected: str = "a JSON object", name: str = "<line>"
) -> list[tuple[int, dict]]:
    """(line number, object) of every row; the first line that is not a JSON object raises.

    Raises:
        DataError: naming the file, the line and what was found.
    """
    scan = scan_jsonl(path, expected=expected, name=name)
    rows = []
    for line in scan.lines + ([scan.torn] if scan.torn else []):
        if line.error:
            raise line.error
        if not isinstance(line.value, dict):
            raise DataError(str(path), line.number, name, expected, type(line.value).__name__)
        rows.append((line.number, line.value))
    return rows


def read_parquet(path: Path) -> list[dict]:
    """Rows of a Parquet file."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def read_hub(
    hub_id: str, config: str | None, split: str, revision: str | None, data_root: str | Path | None
) -> list[dict]:
    """Rows of a ``datasets`` data set: a hub id, or a local folder (absolute or under ``data_root``).

    ``split`` follows ``datasets`` syntax, so ``"gpt4+llama2new"`` concatenates two splits.
    Remote code is never run (``datasets`` no longer runs loading scripts).
    """
    import datasets

    target = hub_id
    for folder in (Path(hub_id).expanduser(), resolve_path(hub_id, data_root)):
        if folder.is_dir():
            target = str(folder)
            break
    return datasets.load_dataset(target, config, split=split, revision=revision).to_list()


def text_key(value: Any) -> str:
    """The text form raw values are compared and mapped by (CSV gives text; JSON and Parquet give types)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()
