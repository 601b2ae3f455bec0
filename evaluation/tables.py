"""A titled report table whose missing cells point to numbered notes, written as Markdown or HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass, field


__all__ = ["Table"]


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

    def to_markdown(self) -> str:
        """The table as GitHub Markdown, notes below."""
        lines = [f"## {self.title}", ""]
        if self.intro:
            lines += [self.intro, ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---" for _ in self.headers) + "|")
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in self.rows]
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
