"""File readers for the source loaders: CSV, JSON, JSON Lines, Parquet and ``datasets`` data sets.

Each reader returns the raw rows of one file as dicts, in file order, with no interpretation:
mapping, labels and validation belong to :mod:`recipes.sources`. A JSON Lines line that cannot be
parsed becomes a row holding a :class:`DataError` under :data:`ERROR_KEY`, so it is reported (or
skipped) with the file's other bad rows instead of stopping the read.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from recipes.schema import DataError


__all__ = [
    "ERROR_KEY",
    "csv_rows",
    "read_csv",
    "read_hub",
    "read_json",
    "read_jsonl",
    "read_parquet",
    "read_text",
    "resolve_path",
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


def _ends_inside_quotes(text: str) -> bool:
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
        field_start = not in_quotes and char in ",\r\n"
        index += 1
    return in_quotes


def csv_rows(path: str | Path) -> Iterator[tuple[int, dict]]:
    """``(1-based row number, row)`` for each non-blank row of a CSV file with a header.

    Fields may be very long (GPTFuzz answers reach 22k characters; the limit is lifted). A row with
    more fields than the header holds a :class:`DataError` under :data:`ERROR_KEY`. A quote left
    open would swallow every later row into one field; the reader notices and refuses the file.

    Raises:
        DataError: not UTF-8, no header, an unterminated quote, or a field ``csv`` cannot read.
    """
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    lines = list(io.StringIO(read_text(path), newline=""))
    reader = csv.reader(lines)
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
            if reader.line_num == len(lines) and _ends_inside_quotes("".join(lines[record_line:])):
                expected = f'a closing quote (") for the field opened in the row starting on line {record_line + 1}'
                raise DataError(str(path), number, "<csv>", expected, "the end of the file")
            record_line = reader.line_num
    except csv.Error as error:
        raise DataError(str(path), number + 1, "<csv>", "a well-formed CSV row", str(error)) from None


def read_csv(path: Path) -> list[dict]:
    """Rows of a CSV file with a header (see :func:`csv_rows`)."""
    return [row for _, row in csv_rows(path)]


def read_json(path: Path) -> list[Any]:
    """Rows of a JSON file holding one array of objects.

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
    if not isinstance(data, list):
        raise DataError(str(path), None, "<file>", "a JSON array of objects", type(data).__name__)
    return data


def read_jsonl(path: Path) -> tuple[list[Any], list[int]]:
    """Rows of a JSON Lines file and their line numbers (blank lines are not rows)."""
    rows, numbers = [], []
    with io.StringIO(read_text(path)) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                rows.append({ERROR_KEY: DataError(str(path), number, "<line>", "one JSON object", line.strip())})
            numbers.append(number)
    return rows, numbers


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
