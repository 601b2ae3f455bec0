"""The data card: what a build produced and from what, as JSON and as Markdown tables.

Written next to the built data (``data_card.json`` / ``data_card.md``) and read back by
``judgeforge data show`` and by evaluation runs that need the build's settings.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recipes.schema import DataError
from recipes.splits import SPLITS


__all__ = ["SFT_SPLITS", "DataCard"]

SFT_SPLITS = ("train", "validation")
_CARD_JSON, _CARD_MD = "data_card.json", "data_card.md"


@dataclass
class DataCard:
    """What a build produced and from what: counts, sources, duplicates, skipped rows, settings.

    ``counts`` is ``{category: {split: {"0": n, "1": n}}}``; ``source_counts`` the same per source
    (``{category: {source: {split: ...}}}``). ``held_out`` names each category's sources that are in
    test only; ``label_origins`` says who labelled each source (human, machine, curated).
    """

    name: str
    recipe_hash: str
    prompt_template: str
    budget: dict[str, Any]
    seed: int
    splits: dict[str, float]
    counts: dict[str, dict[str, dict[str, int]]]
    sources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    duplicates_removed: dict[str, int] = field(default_factory=dict)
    duplicates_conflicting: dict[str, int] = field(default_factory=dict)
    subsampled: dict[str, int] = field(default_factory=dict)
    limit_per_category: int | None = None
    few_shot: int = 0
    exemplars: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, Any] = field(default_factory=lambda: {"total": 0, "reasons": {}, "rows": []})
    description: str = ""
    sft_splits: list[str] = field(default_factory=lambda: list(SFT_SPLITS))
    label_origins: dict[str, str] = field(default_factory=dict)
    held_out: dict[str, list[str]] = field(default_factory=dict)
    source_counts: dict[str, dict[str, dict[str, dict[str, int]]]] = field(default_factory=dict)
    mixture: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    duplicates_across_sources: dict[str, dict[str, int]] = field(default_factory=dict)
    cap_by: str = "rows"

    def total(self, split: str | None = None, label: int | None = None) -> int:
        """Examples in ``split`` (all splits when None) with ``label`` (both when None)."""
        return sum(
            n
            for per_split in self.counts.values()
            for name, per_label in per_split.items()
            if split in (None, name)
            for lb, n in per_label.items()
            if label is None or lb == str(label)
        )

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready data."""
        return dataclasses.asdict(self)

    def to_markdown(self) -> str:
        """The card as Markdown tables (what ``judgeforge data show`` prints)."""
        budget = ", ".join(f"{k} {v}" for k, v in self.budget.items())
        shares = " / ".join(f"{k} {v:g}" for k, v in self.splits.items())
        lines = [
            f"# Data card: {self.name}",
            "",
            f"recipe hash `{self.recipe_hash}` · template `{self.prompt_template}` · seed {self.seed} · {shares}",
            f"budget: {budget}"
            + (f" · limit per category {self.limit_per_category}" if self.limit_per_category else ""),
            "",
            "| category | label | " + " | ".join(SPLITS) + " | total |",
            "|---|---|" + "---:|" * (len(SPLITS) + 1),
        ]
        for category in sorted(self.counts):
            for label in ("1", "0"):
                cells = [self.counts[category].get(s, {}).get(label, 0) for s in SPLITS]
                lines.append(f"| {category} | {label} | " + " | ".join(map(str, cells)) + f" | {sum(cells)} |")
        cells = [self.total(s) for s in SPLITS]
        lines.append("| **all** | | " + " | ".join(map(str, cells)) + f" | {sum(cells)} |")
        lines += ["", "## Sources", "", "| category | source | kind | location | read | filtered | skipped | kept |"]
        lines.append("|---|---|---|---|---:|---:|---:|---:|")
        for category in sorted(self.sources):
            for r in self.sources[category]:
                lines.append(
                    f"| {category} | {r['name']} | {r['kind']} | {r['location']} | {r['rows_read']} | "
                    f"{r['filtered']} | {r['skipped']} | {r['loaded']} |"
                )
        lines += self._source_lines()
        removed = sum(self.duplicates_removed.values())
        lines += ["", f"Exact duplicates removed: {removed}" + (f" {self.duplicates_removed}" if removed else "")]
        if self.duplicates_conflicting:
            lines.append(f"Duplicates whose labels disagreed (first label kept): {self.duplicates_conflicting}")
        if self.subsampled:
            lines.append(f"Dropped by limit_per_category (stratified): {self.subsampled}")
        if self.exemplars:
            lines.append(f"Few-shot exemplars (from train): { {c: len(v) for c, v in self.exemplars.items()} }")
        lines.append(f"Skipped rows: {self.skipped.get('total', 0)}")
        for reason, n in self.skipped.get("reasons", {}).items():
            lines.append(f"- {n} × {reason}")
        return "\n".join(lines) + "\n"

    def _source_lines(self) -> list[str]:
        """Rows per category, source and split (positives/total), with label origin, cap and held-out mark."""
        if not self.source_counts:
            return []
        lines = ["", f"## Rows per source (positives/total; caps by {self.cap_by})", ""]
        lines += ["| category | source | labels | held out | cap | " + " | ".join(SPLITS) + " |"]
        lines.append("|---|---|---|---|---:|" + "---:|" * len(SPLITS))
        for category in sorted(self.source_counts):
            for source, per_split in sorted(self.source_counts[category].items()):
                held = "yes" if source in self.held_out.get(category, []) else ""
                cap = (self.mixture.get(category, {}).get(source) or {}).get("cap") or ""
                cells = []
                for split in SPLITS:
                    n = per_split.get(split, {})
                    cells.append(f"{n.get('1', 0)}/{n.get('1', 0) + n.get('0', 0)}")
                origin = self.label_origins.get(source, "unspecified")
                lines.append(f"| {category} | {source} | {origin} | {held} | {cap} | " + " | ".join(cells) + " |")
        for category, pairs in sorted(self.duplicates_across_sources.items()):
            lines.append(f"Duplicates across sources in {category} (removed -> kept): {pairs}")
        return lines

    def write(self, folder: str | Path) -> None:
        """Write ``data_card.json`` and ``data_card.md`` into ``folder``."""
        folder = Path(folder)
        (folder / _CARD_JSON).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", "utf-8")
        (folder / _CARD_MD).write_text(self.to_markdown(), "utf-8")

    @classmethod
    def read(cls, folder: str | Path) -> DataCard:
        """Read the card of a built data folder."""
        path = Path(folder) / _CARD_JSON
        if not path.is_file():
            raise DataError(str(folder), None, _CARD_JSON, "a folder written by `judgeforge data build`", str(path))
        data = json.loads(path.read_text("utf-8"))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
