"""File readers for the source loaders: CSV, JSON, JSON Lines, Parquet and ``datasets`` data sets.

Each reader returns the raw rows of one file as dicts, in file order, with no interpretation:
mapping, labels and validation belong to :mod:`recipes.sources`. A JSON Lines line that cannot be
parsed becomes a row holding a :class:`DataError` under :data:`ERROR_KEY`, so it is reported (or
skipped) with the file's other bad rows instead of stopping the read.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recipes.schema import DataError


__all__ = [
    "ERROR_KEY",
    "JsonlLine",
    "JsonlScan",
    "csv_rows",
    "read_csv",
    "read_hub",
    "read_json",
    "read_jsonl",
    "read_jsonl_rows",
    "read_parquet",
    "read_text",
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


def read_text(path: str | Path) -> str:
    """The text of a UTF-8 file (a leading BOM dropped, so it never sticks to the first column name).

    Raises:
        DataError: bytes that are not UTF-8, naming the line and the byte offset.
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        expected = f"UTF-8 text (byte offset {error.start} is not UTF-8; re-save the file as UTF-8)"
        raise DataError(
            str(path), line, "<encoding>", expected, data[max(0, error.start - 10) : error.end + 10]
        ) from None


def _ends_inside_quotes(text: str, delimiter: str = ",") -> bool:
    """Whether CSV ``text`` (one record onwards) ends inside a quoted field, read as ``csv`` reads it."""
    in_quotes, field_start, index = False, True, 0
    while index < len(text):
        char = text[index]
        if in_quotes:
            if char == '"':
                if text.startswith('""', index):
                    index += 2
                    continue
                in_quotes = False
        elif char == '"' and field_start:
            in_quotes = True
        field_start = not in_quotes and char in f"{delimiter}\r\n"
        index += 1
    return in_quotes


def csv_rows(
    path: str | Path, *, comment_prefix: str | None = None, delimiter: str = ",", quoting: bool = True
) -> Iterator[tuple[int, dict]]:
    r"""``(1-based row number, row)`` for each non-blank row of a CSV file with a header.

    Fields may be very long (GPTFuzz answers reach 22k characters; the limit is lifted). A row with
    more fields than the header holds a :class:`DataError` under :data:`ERROR_KEY`. A quote left
    open would swallow every later row into one field; the reader notices and refuses the file.
    ``comment_prefix``: leading lines starting with it (PyRIT's ``# dataset_version=...``) are not
    the header. ``delimiter="\t", quoting=False`` reads a TSV whose fields hold bare quotes (BEGIN).

    Raises:
        DataError: not UTF-8, no header, an unterminated quote, or a field ``csv`` cannot read.
    """
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    lines = list(io.StringIO(read_text(path), newline=""))
    while comment_prefix and lines and lines[0].startswith(comment_prefix):
        lines.pop(0)
    style = csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE
    reader = csv.reader(lines, delimiter=delimiter, quoting=style)
    number = 0
    try:
        header = next(reader, None)
        if not header:
            raise DataError(
                str(path), None, "<header>", "a header row naming the columns", "an empty file or first line"
            )
        record_line = reader.line_num
        for fields in reader:
            if not fields:
                record_line = reader.line_num
                continue
            number += 1
            if len(fields) > len(header):
                expected = f"{len(header)} fields as in the header"
                yield number, {ERROR_KEY: DataError(str(path), number, "<row>", expected, f"{len(fields)} fields")}
            else:
                yield number, dict(zip(header, fields + [None] * (len(header) - len(fields))))
            ended = reader.line_num == len(lines)
            if quoting and ended and _ends_inside_quotes("".join(lines[record_line:]), delimiter):
                expected = f'a closing quote (") for the field opened in the row starting on line {record_line + 1}'
                raise DataError(str(path), number, "<csv>", expected, "the end of the file")
            record_line = reader.line_num
    except csv.Error as error:
        raise DataError(str(path), number + 1, "<csv>", "a well-formed CSV row", str(error)) from None


def read_csv(
    path: Path, *, comment_prefix: str | None = None, delimiter: str = ",", quoting: bool = True
) -> list[dict]:
    """Rows of a CSV file with a header (see :func:`csv_rows`)."""
    return [row for _, row in csv_rows(path, comment_prefix=comment_prefix, delimiter=delimiter, quoting=quoting)]


def read_json(path: Path, records: str | None = None) -> list[Any]:
    """Rows of a JSON file: one array of objects, or the array under key ``records`` of one object.

    ``records="."``: the file is one object, itself the only row (a folder tree of one-row files).

    Raises:
        DataError: when the file is not one JSON array (with a hint when it is JSON Lines).
    """
    with io.StringIO(read_text(path)) as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as error:
            hint = " (for JSON Lines use kind: jsonl)" if "Extra data" in str(error) else ""
            raise DataError(
                str(path), error.lineno, "<file>", f"one JSON array of objects{hint}", str(error)
            ) from None
    if records == "." and isinstance(data, dict):
        return [data]
    if records and records != ".":
        if not isinstance(data, dict) or not isinstance(data.get(records), list):
            raise DataError(str(path), None, "<file>", f"a JSON object with an array under '{records}'", records)
        return data[records]
    if not isinstance(data, list):
        raise DataError(str(path), None, "<file>", "a JSON array of objects", type(data).__name__)
    return data


@dataclass
class JsonlLine:
    """One non-blank line of a JSON Lines file: its number, and its value or why it is not JSON."""

    number: int
    value: Any = None
    error: DataError | None = None
    not_utf8: bool = False  # the file's encoding is wrong: no row of it can be trusted


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


def _parse_line(raw: bytes, path: Path, number: int, expected: str, name: str, offset: int) -> JsonlLine:
    try:
        return JsonlLine(number, json.loads(raw.decode("utf-8")))
    except UnicodeDecodeError as error:
        got = f"bytes that are not UTF-8 at byte offset {offset + error.start} ({error.reason}; re-save as UTF-8)"
        return JsonlLine(number, error=DataError(str(path), number, name, expected, got), not_utf8=True)
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
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0  # a BOM is not part of the first row
    *complete, tail = data[bom:].split(b"\n")
    scan = JsonlScan(good_end=len(data) - len(tail), size=len(data))
    offset = bom
    for number, raw in enumerate(complete, start=1):
        if raw.strip():
            scan.lines.append(_parse_line(raw, path, number, expected, name, offset))
        offset += len(raw) + 1
    if tail.strip():
        last = _parse_line(tail, path, len(complete) + 1, expected, name, offset)
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
    for line in lines:
        if line.not_utf8:
            raise line.error
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
