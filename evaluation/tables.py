"""Report tables whose missing cells point to numbered notes, their cells, and the :class:`Report` written.

A table never holds an empty or NaN cell: a value without a number becomes ``n/a [k]`` and the
reason is note k under the table, in Markdown and in HTML alike.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.records import MetricRow


__all__ = ["Report", "Table", "f1_cell", "is_missing", "number_cell", "percent_cell"]


@dataclass
class Table:
    """A titled table whose missing cells point to numbered notes."""

    key: str
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    intro: str = ""
    notes: list[str] = field(default_factory=list)

    def note(self, reason: str) -> str:
        """The cell text for a missing value: ``n/a [k]`` with ``reason`` as note k."""
        if reason not in self.notes:
            self.notes.append(reason)
        return f"n/a [{self.notes.index(reason) + 1}]"

    def grid_markdown(self) -> list[str]:
        """The header, separator and row lines of the Markdown table (no title, intro or notes)."""
        lines = ["| " + " | ".join(self.headers) + " |", "|" + "|".join("---" for _ in self.headers) + "|"]
        return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in self.rows]

    def to_markdown(self) -> str:
        """The table as GitHub Markdown, notes below."""
        lines = [f"## {self.title}", ""]
        if self.intro:
            lines += [self.intro, ""]
        lines += self.grid_markdown()
        if self.notes:
            lines += [""] + [f"[{i}] {reason}  " for i, reason in enumerate(self.notes, start=1)]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """The table as HTML, notes below."""
        parts = [f"<h2>{html.escape(self.title)}</h2>"]
        if self.intro:
            parts.append(f"<p>{html.escape(self.intro)}</p>")
        parts.append(
            "<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in self.headers) + "</tr></thead>"
        )
        body = ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows]
        parts.append("<tbody>" + "".join(body) + "</tbody></table>")
        if self.notes:
            items = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
            parts.append(f'<ol class="notes">{items}</ol>')
        return "\n".join(parts)


def is_missing(value: Any) -> bool:
    """Whether a value has no number (None or NaN)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def number_cell(table: Table, row: MetricRow, key: str, digits: int = 3) -> str:
    """``row[key]`` with ``digits`` decimals, or a note saying why it has none."""
    value = row.get(key)
    if is_missing(value):
        return table.note(f"{key}: {row.reason(key, 'undefined')}")
    return f"{value:.{digits}f}"


def percent_cell(table: Table, row: MetricRow, key: str) -> str:
    """``row[key]`` as a percentage, or a note saying why it has none."""
    value = row.get(key)
    if is_missing(value):
        return table.note(f"{key}: {row.reason(key, 'no examples')}")
    return f"{100 * value:.1f}%"


def f1_cell(table: Table, row: MetricRow, key: str = "f1") -> str:
    """F1 with its 95% interval, or notes saying why either is missing."""
    f1 = row.get(key)
    if is_missing(f1):
        return table.note(f"{key}: {row.reason(key, 'undefined')}")
    low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    if is_missing(low) or is_missing(high):
        reason = row.reason(f"{key}_ci_low", "no interval")
        return f"{f1:.3f} " + table.note(f"95% interval: {reason}")
    return f"{f1:.3f} [{low:.3f}, {high:.3f}]"


@dataclass
class Report:
    """What :func:`write_report` wrote: the tables (the headline first) and the files.

    It reads as the list of paths it replaces (``report[0]`` is ``report.md``).
    """

    tables: list[Table]
    paths: list[Path]
    rows: list[MetricRow] = field(default_factory=list)
    robustness: list[Any] = field(default_factory=list)  # evaluation.robustness.RobustnessRow, pooled and per category

    @property
    def markdown(self) -> Path:
        """The ``report.md`` written."""
        return self.paths[0]

    def table(self, key: str) -> Table:
        """The table with this key (``headline``, ``by_category``, ...)."""
        return next(t for t in self.tables if t.key == key)

    def headline(self) -> str:
        """The headline table as printed Markdown: its heading and its rows (what a finished run prints)."""
        table = self.table("headline")
        return "\n".join([f"## {table.title}", *table.grid_markdown()])

    def __iter__(self) -> Iterator[Path]:
        return iter(self.paths)

    def __getitem__(self, index: int) -> Path:
        return self.paths[index]

    def __len__(self) -> int:
        return len(self.paths)
