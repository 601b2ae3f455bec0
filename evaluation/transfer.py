"""How a judge does on sources it never saw: F1 and AUROC on in-source test rows beside each held-out source.

A judge is used on other people's transcripts. Its score on the test split of the sources it was trained
on says little about that; its score on a source held out of training entirely (another victim, attack,
annotator) says more, and the gap between the two is what a user should expect to lose on their own
data. Records in, :class:`~evaluation.tables.Table` out; every row is
:func:`evaluation.metric_rows.compute_metric_rows` on the slice's records, the rest of the report's numbers.

The held-out sources of a category are the data card's ``test_sources`` where the run recorded them,
otherwise the evaluated sources that no training row came from (``data.sources`` in ``run.json``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evaluation import registry
from evaluation.metric_rows import compute_metric_rows
from evaluation.records import JudgmentRecord, MetricRow, as_record
from evaluation.tables import Table, f1_cell, number_cell


__all__ = [
    "IN_SOURCE",
    "SliceMetrics",
    "held_out_sources",
    "transfer_metrics",
    "transfer_table",
    "wants_transfer_table",
]

IN_SOURCE = "in-source"


@dataclass(frozen=True)
class SliceMetrics:
    """One judge's metrics on one category's in-source rows, or on one held-out source's rows."""

    judge: str
    kind: str
    category: str
    rows: str  # IN_SOURCE or the held-out source's name
    sources: tuple[str, ...]  # the sources pooled in this slice
    metrics: MetricRow
    f1_gap: float = math.nan  # held-out minus in-source; NaN for the in-source slice itself
    auroc_gap: float = math.nan


def held_out_sources(data_info: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{category: [held-out source, ...]}`` from the ``data`` part of ``run.json``.

    ``data.test_sources`` (the data card's list) wins; otherwise a source is held out of a category when
    it has evaluated rows there and no training rows (``data.sources[category].train / .evaluated``).
    """
    per_category = data_info.get("sources") or {}
    declared = data_info.get("test_sources")
    out: dict[str, list[str]] = {}
    for category, seen in sorted(per_category.items()):
        evaluated = list(seen.get("evaluated", []))
        if declared is not None:
            wanted = declared.get(category, []) if isinstance(declared, Mapping) else declared
            out[category] = [s for s in evaluated if s in set(wanted)]
        else:
            trained = set(seen.get("train", []))
            out[category] = [s for s in evaluated if s not in trained]
    return out


def wants_transfer_table(data_info: Mapping[str, Any]) -> bool:
    """The table is worth showing when some category mixes sources or holds one out."""
    per_category = data_info.get("sources") or {}
    many = any(len(set(v.get("evaluated", [])) | set(v.get("train", []))) > 1 for v in per_category.values())
    return many or any(held_out_sources(data_info).values())


def _slice_metrics(items: Sequence[JudgmentRecord], category: str, n_boot: int, seed: int) -> MetricRow:
    # The report's own rows, on this slice's records: repeats pooled, the bootstrap resampling whole groups.
    rows = compute_metric_rows(items, n_boot=n_boot, seed=seed)
    return next(r for r in rows if r.category == category)


def _gap(held: float, base: float) -> float:
    return held - base if not (math.isnan(held) or math.isnan(base)) else math.nan


def transfer_metrics(
    records: Sequence[JudgmentRecord | Mapping[str, Any]],
    held_out: Mapping[str, Sequence[str]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[SliceMetrics]:
    """Per judge and category: the in-source slice, then one slice per held-out source with its gap.

    Records without a ``source`` (stores written before it was recorded) count as in-source.
    """
    by_key: dict[tuple[str, str], list[JudgmentRecord]] = {}
    for record in map(as_record, records):
        by_key.setdefault((record.judge, record.category), []).append(record)
    out: list[SliceMetrics] = []
    for (judge, category), items in sorted(by_key.items()):
        kind = items[0].kind
        held = list(held_out.get(category, []))
        inside = [r for r in items if r.source not in held]
        base = _slice_metrics(inside, category, n_boot, seed) if inside else None
        if base is not None:
            names = tuple(sorted({r.source or "?" for r in inside}))
            out.append(SliceMetrics(judge, kind, category, IN_SOURCE, names, base))
        for source in held:
            rows = [r for r in items if r.source == source]
            if not rows:
                continue
            metrics = _slice_metrics(rows, category, n_boot, seed)
            f1_gap = _gap(metrics["f1"], base["f1"]) if base else math.nan
            auroc_gap = _gap(metrics["auroc"], base["auroc"]) if base else math.nan
            out.append(SliceMetrics(judge, kind, category, source, (source,), metrics, f1_gap, auroc_gap))
    return out


def _gap_cell(table: Table, value: float, what: str, has_base: bool) -> str:
    if not has_base:
        return table.note(f"{what} gap: no in-source test rows of this category in the run")
    if math.isnan(value):
        return table.note(f"{what} gap: {what} undefined on the in-source or the held-out rows")
    return f"{value:+.3f}"


def transfer_table(
    records: Sequence[JudgmentRecord | Mapping[str, Any]],
    data_info: Mapping[str, Any],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> Table:
    """The report table: per judge and category, in-source test rows, then each held-out source with its gap."""
    held = held_out_sources(data_info)
    listed = ", ".join(f"{c}: {', '.join(s)}" for c, s in held.items() if s) or "none"
    table = Table(
        "transfer",
        "Transfer: in-source test rows vs sources held out of training",
        ["judge", "kind", "category", "test rows", "sources", "n", "F1 [95% CI]", "AUROC", "F1 gap", "AUROC gap"],
        intro="In-source rows come from the sources the judge was trained on (their test split); a held-out source "
        "gave no row to training or validation. The gap is held-out minus in-source: what to expect to lose on "
        f"data the judge never saw. Held-out sources: {listed}.",
    )
    order = registry.report_order()
    slices = transfer_metrics(records, held, n_boot=n_boot, seed=seed)
    slices.sort(key=lambda s: (order.get(s.kind, 9), s.judge, s.category, s.rows != IN_SOURCE, s.rows))
    has_base = {(s.judge, s.category): False for s in slices} | {
        (s.judge, s.category): True for s in slices if s.rows == IN_SOURCE
    }
    for s in slices:
        in_source = s.rows == IN_SOURCE
        table.rows.append(
            [
                s.judge,
                s.kind,
                s.category,
                s.rows if in_source else f"held out: {s.rows}",
                ", ".join(s.sources),
                str(s.metrics["n_examples"]),
                f1_cell(table, s.metrics),
                number_cell(table, s.metrics, "auroc"),
                "-" if in_source else _gap_cell(table, s.f1_gap, "F1", has_base[(s.judge, s.category)]),
                "-" if in_source else _gap_cell(table, s.auroc_gap, "AUROC", has_base[(s.judge, s.category)]),
            ]
        )
    return table
