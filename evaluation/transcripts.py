"""Reading a user's transcript file (CSV or JSON Lines) into judgment examples, for ``judgeforge judge``.

A user's file is not a built data set: its columns are named by flags, some rows are unusable, and
it may carry what a judgment needs besides the prompt and the response (the secret that must not
leak, the reference answer: ``--context-column``), a human label to score the judge against
(``--label-column``) and columns the user wants back beside each verdict (``--keep-columns``).
Every unusable row is skipped and counted by reason, never dropped silently; a value that cannot
mean what its column says (a label ``maybe``) stops the read with the file, row and field.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recipes.categories import Category
from recipes.readers import ERROR_KEY, csv_rows, read_jsonl_rows
from recipes.schema import DataError, check_prompt


__all__ = ["Columns", "Transcripts", "parse_label", "read_transcripts"]

logger = logging.getLogger(__name__)

_TRUE = ("1", "true", "yes", "positive")
_FALSE = ("0", "false", "no", "negative")


@dataclass(frozen=True)
class Columns:
    """Which input column holds what (the ``judge`` command's ``--*-column`` flags)."""

    prompt: str = "prompt"
    response: str = "response"
    id: str = "id"
    context: str | None = None
    label: str | None = None
    keep: tuple[str, ...] = ()

    def required(self) -> list[tuple[str, str]]:
        """(column, flag that names it) for every column each row must have."""
        named = [(self.prompt, "--prompt-column"), (self.response, "--response-column")]
        named += [(c, flag) for c, flag in ((self.context, "--context-column"), (self.label, "--label-column")) if c]
        return named + [(c, "--keep-columns") for c in self.keep]


@dataclass
class Transcripts:
    """The judgeable rows of one file.

    Attributes:
        examples: ``id``, ``category``, ``prompt``, ``response``, and ``context`` when the row has one.
        labels: id -> human label (0/1), for the rows whose label column is filled in.
        kept: id -> the ``--keep-columns`` values of that row, in the order asked for.
        skipped: rows skipped, by reason.
    """

    examples: list[dict] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    kept: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)

    @property
    def unlabelled(self) -> int:
        """Judged rows without a human label (left out of the metrics, and said so)."""
        return len(self.examples) - len(self.labels)


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based row number, row) from a CSV or JSON Lines file."""
    if path.suffix.lower() == ".csv":
        for number, row in csv_rows(path):  # BOM, encoding, unterminated quotes, long fields: DataError
            if ERROR_KEY in row:
                raise row[ERROR_KEY]
            yield number, row
        return
    yield from read_jsonl_rows(path, expected="one JSON object per line", name="<json>")


def _prompt_value(value: Any) -> Any:
    """A CSV cell holding a JSON list of chat messages is that list."""
    if isinstance(value, str) and value.lstrip().startswith('[{"role"'):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def parse_label(value: Any, category: Category, where: tuple[str, int, str]) -> int | None:
    """A human label: 0/1, true/false, yes/no, or the category's verdict words; None when empty.

    Raises:
        DataError: any other value, naming the file, row and column.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    text = str(value).strip().lower()
    if text in _TRUE or text == category.positive.lower():
        return 1
    if text in _FALSE or text == category.negative.lower():
        return 0
    file, row, column = where
    expected = f"a label: 1/0, true/false, yes/no, {category.positive}/{category.negative}, or empty"
    raise DataError(file, row, column, expected, value)


def _context(value: Any, column: str) -> dict[str, Any] | None:
    """A JSON object (in JSON Lines, or a CSV cell holding one) is the context; other text is ``{column: text}``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            value = parsed
    if isinstance(value, dict):
        return value or None
    return {column: value if isinstance(value, str) else json.dumps(value)}


def _skip(skipped: Counter, reason: str, message: str, *args: Any) -> None:
    skipped[reason] += 1
    logger.warning(message + "; row skipped", *args)


def read_transcripts(path: str | Path, category: Category, columns: Columns | None = None) -> Transcripts:
    """Read every row of ``path`` into examples of ``category`` (see the module docstring).

    Rows without an id column get ``row-<n>`` (their 1-based row number). Rows with an empty id,
    response or prompt, a malformed prompt, or a repeated id are skipped and counted.

    Raises:
        DataError: no such file, no rows, a missing column (naming the flag that sets it and the
            columns found), a malformed line, or a label that is not a label.
    """
    path, columns = Path(path), columns or Columns()
    if not path.is_file():
        raise DataError(str(path), None, "input", "an existing CSV or JSON Lines file", "no such file")
    out = Transcripts()
    number = 0
    for number, row in _rows(path):
        for name, flag in columns.required():
            if name not in row:
                raise DataError(
                    str(path), number, name, f"a column named '{name}' (set it with {flag})", f"columns {list(row)}"
                )
        raw_id = row.get(columns.id)
        if columns.id in row and raw_id in (None, ""):
            _skip(out.skipped, "empty id", "%s:%d: field '%s': empty id", path, number, columns.id)
            continue
        ident = str(raw_id).strip() if raw_id not in (None, "") else f"row-{number}"
        prompt, response = _prompt_value(row[columns.prompt]), row[columns.response]
        if not isinstance(response, str) or not response.strip():
            _skip(out.skipped, "empty response", "%s:%d: field '%s': empty response", path, number, columns.response)
            continue
        try:
            prompt = check_prompt(prompt, str(path), number)
        except DataError as error:
            _skip(out.skipped, "empty prompt" if not prompt or not str(prompt).strip() else "bad prompt", "%s", error)
            continue
        if ident in out.kept:
            _skip(out.skipped, "repeated id", "%s:%d: field '%s': id %r repeated", path, number, columns.id, ident)
            continue
        example = {"id": ident, "category": category.name, "prompt": prompt, "response": response}
        context = _context(row[columns.context], columns.context) if columns.context else None
        if context:
            example["context"] = context
        if columns.label:
            label = parse_label(row[columns.label], category, (str(path), number, columns.label))
            if label is not None:
                out.labels[ident] = label
        out.kept[ident] = {name: row[name] for name in columns.keep}
        out.examples.append(example)
    if not number:
        raise DataError(str(path), None, "<file>", "at least one transcript row (CSV: a header, then rows)", "no rows")
    return out
