"""File readers for the source loaders: CSV, JSON, JSON Lines, Parquet and ``datasets`` data sets.

Each reader returns the raw rows of one file as dicts, in file order, with no interpretation:
mapping, labels and validation belong to :mod:`recipes.sources`. A JSON Lines line that cannot be
parsed becomes a row holding a :class:`DataError` under :data:`ERROR_KEY`, so it is reported (or
skipped) with the file's other bad rows instead of stopping the read.
"""

from __future__ import annotations

import csv
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from recipes.schema import DataError


__all__ = ["ERROR_KEY", "read_csv", "read_hub", "read_json", "read_jsonl", "read_parquet", "resolve_path", "text_key"]

# A row that could not be read or built carries its DataError under this key.
ERROR_KEY = "__error__"


def resolve_path(path: str | Path, data_root: str | Path | None) -> Path:
    """``path`` itself when absolute (or with no data root), else under ``data_root``."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or data_root is None:
        return candidate
    return Path(data_root).expanduser() / candidate


def read_csv(
    path: Path, *, comment_prefix: str | None = None, delimiter: str = ",", quoting: bool = True
) -> list[dict]:
    r"""Rows of a CSV file with a header (fields may be very long: GPTFuzz answers reach 22k characters).

    ``comment_prefix``: leading lines starting with it (PyRIT's ``# dataset_version=...``) are not
    the header. ``delimiter="\t", quoting=False`` reads a TSV whose fields hold bare quotes (BEGIN).
    """
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, newline="", encoding="utf-8-sig") as handle:
        lines = iter(handle)
        first = next(lines, "")
        while comment_prefix and first.startswith(comment_prefix):
            first = next(lines, "")
        style = csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE
        return list(csv.DictReader(itertools.chain([first], lines), delimiter=delimiter, quoting=style))


def read_json(path: Path, records: str | None = None) -> list[Any]:
    """Rows of a JSON file: one array of objects, or the array under key ``records`` of one object.

    ``records="."``: the file is one object, itself the only row (a folder tree of one-row files).

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
    if records == "." and isinstance(data, dict):
        return [data]
    if records and records != ".":
        if not isinstance(data, dict) or not isinstance(data.get(records), list):
            raise DataError(str(path), None, "<file>", f"a JSON object with an array under '{records}'", records)
        return data[records]
    if not isinstance(data, list):
        raise DataError(str(path), None, "<file>", "a JSON array of objects", type(data).__name__)
    return data


def read_jsonl(path: Path) -> tuple[list[Any], list[int]]:
    """Rows of a JSON Lines file and their line numbers (blank lines are not rows)."""
    rows, numbers = [], []
    with open(path, encoding="utf-8") as handle:
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
