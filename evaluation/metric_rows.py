"""Metric rows of a run: every judge x category (and pooled), agreement across repeats, second level.

Reads typed store records and returns :class:`~evaluation.records.MetricRow` objects for the report;
the numbers of one confusion (F1, its bootstrap interval, AUROC, the second-level change) come from
:mod:`evaluation.metrics`, so there is one implementation of each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evaluation import registry
from evaluation.metrics import (
    ALL,
    compute_binary_metrics,
    compute_second_level,
    effective_predictions,
    f1_from_counts,
    tp_fp_fn,
)
from evaluation.records import JudgmentRecord, MetricRow, as_record


__all__ = ["compute_agreement", "compute_metric_rows", "compute_second_level_rows", "fleiss_kappa"]

_NAN = float("nan")


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa from an items x categories table of rater counts (same raters per item).

    Returns NaN when chance agreement is 1 (every answer in one category).
    """
    table = np.asarray(counts, dtype=float)
    n_items, _ = table.shape
    raters = table.sum(axis=1)
    if n_items == 0 or np.any(raters != raters[0]) or raters[0] < 2:
        raise ValueError(f"field 'counts': expected the same number (>= 2) of raters per item, got {raters.tolist()}")
    r = raters[0]
    p_item = ((table**2).sum(axis=1) - r) / (r * (r - 1))
    p_bar = p_item.mean()
    p_cat = table.sum(axis=0) / (n_items * r)
    p_e = float((p_cat**2).sum())
    if math.isclose(p_e, 1.0):
        return _NAN
    return float((p_bar - p_e) / (1 - p_e))


def compute_agreement(answers: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """Agreement of a judge with itself across repeats.

    Args:
        answers: per item, the answer of every repeat: 1, 0, or ``"none"`` (no label); an output
            without a label counts as its own answer category.

    Returns:
        ``n_items``, ``repeats``, ``percent_agreement`` (share of items on which every repeat gave
        the same answer), ``mean_pairwise_agreement``, ``fleiss_kappa`` and ``reasons``. Items
        with fewer repeats than the most common count are left out (counted in ``n_incomplete``).
    """
    reasons: dict[str, str] = {}
    lengths = [len(a) for a in answers]
    repeats = max(set(lengths), key=lengths.count) if lengths else 0
    complete = [[str(x) for x in a] for a in answers if len(a) == repeats]
    out: dict[str, Any] = {"n_items": len(complete), "repeats": repeats, "n_incomplete": len(answers) - len(complete)}
    if not complete or repeats < 2:
        why = "no items" if not complete else "needs at least 2 repeats"
        out.update(percent_agreement=_NAN, mean_pairwise_agreement=_NAN, fleiss_kappa=_NAN)
        out["reasons"] = dict.fromkeys(("percent_agreement", "mean_pairwise_agreement", "fleiss_kappa"), why)
        return out
    categories = sorted({x for a in complete for x in a})
    table = np.asarray([[a.count(c) for c in categories] for a in complete], dtype=float)
    out["percent_agreement"] = float(np.mean([len(set(a)) == 1 for a in complete]))
    out["mean_pairwise_agreement"] = float((((table**2).sum(axis=1) - repeats) / (repeats * (repeats - 1))).mean())
    out["fleiss_kappa"] = fleiss_kappa(table)
    if math.isnan(out["fleiss_kappa"]):
        reasons["fleiss_kappa"] = "every answer in one category (chance agreement is 1)"
    out["reasons"] = reasons
    return out


def _group_records(records: Sequence[JudgmentRecord]) -> dict[tuple[str, str], list[JudgmentRecord]]:
    """Records by (judge, category), plus (judge, "all") pooling the categories."""
    grouped: dict[tuple[str, str], list[JudgmentRecord]] = {}
    for record in records:
        grouped.setdefault((record.judge, record.category), []).append(record)
        grouped.setdefault((record.judge, ALL), []).append(record)
    return grouped


def _ordered(items: list[JudgmentRecord]) -> list[JudgmentRecord]:
    return sorted(items, key=lambda r: (r.category, r.example_id, r.repeat))


def _repeat_f1(rows: list[JudgmentRecord]) -> tuple[float, float, str]:
    by_repeat: dict[int, list[JudgmentRecord]] = {}
    for r in rows:
        by_repeat.setdefault(r.repeat, []).append(r)
    scores = []
    for items in by_repeat.values():
        labels = [r.human_label for r in items]
        eff = effective_predictions(labels, [r.label for r in items], [r.status for r in items])
        true = np.asarray([r.human_label for r in items])
        scores.append(f1_from_counts(*tp_fp_fn(true, eff)))
    finite = [s for s in scores if not math.isnan(s)]
    if len(finite) < 2:
        return (finite[0] if finite else _NAN), _NAN, "needs at least 2 repeats with a defined F1"
    return float(np.mean(finite)), float(np.std(finite, ddof=1)), ""


def compute_metric_rows(
    records: Sequence[JudgmentRecord | Mapping[str, Any]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[MetricRow]:
    """One row of metrics per judge x category, plus one per judge over all categories (``"all"``).

    Records are the store's lines (:class:`JudgmentRecord`, or their dicts). Repeats are pooled: the
    confusion counts sum over repeats, and the bootstrap resamples whole clusters (the example's
    ``group``, so all repeats of an example move together). ``f1_repeat_mean`` / ``_std`` and the
    agreement across repeats come from the per-repeat answers.
    """
    rows = []
    for (judge, category), items in sorted(_group_records([as_record(r) for r in records]).items()):
        items = _ordered(items)
        first = items[0]
        review = first.kind == registry.SECOND_LEVEL
        metrics = compute_binary_metrics(
            [r.human_label for r in items],
            [r.label for r in items],
            [r.status for r in items],
            [None if r.kind == registry.SECOND_LEVEL else r.p_positive for r in items],
            [r.cluster for r in items],
            n_boot=n_boot,
            seed=seed,
            confidence=confidence,
        )
        reasons = metrics.pop("reasons")
        if review:
            reasons["auroc"] = reasons["auprc"] = (
                "a review gives no probability of its own (flipped verdicts have none)"
            )
        mean, std, why = _repeat_f1(items)
        metrics["f1_repeat_mean"], metrics["f1_repeat_std"] = mean, std
        if why:
            reasons["f1_repeat_std"] = why
            if math.isnan(mean):
                reasons["f1_repeat_mean"] = why
        answers: dict[tuple[str, str], list[Any]] = {}
        for r in items:
            answers.setdefault((r.category, r.example_id), []).append(r.answer)
        agreement = compute_agreement(list(answers.values()))
        reasons.update(agreement.pop("reasons"))
        values = {
            "kind": first.kind,
            "model": first.model,
            "prompt": first.prompt,
            "n_examples": len(answers),
            **metrics,
            "repeats": agreement["repeats"],
            "percent_agreement": agreement["percent_agreement"],
            "fleiss_kappa": agreement["fleiss_kappa"],
        }
        rows.append(MetricRow.of(judge, category, values, reasons))
    return rows


def compute_second_level_rows(
    records: Sequence[JudgmentRecord | Mapping[str, Any]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[MetricRow]:
    """Flip counts and F1 change per second-level judge x category (and ``"all"``).

    Only records that carry a ``review`` (``first_label``, ``first_status``) take part.
    """
    reviewed = [r for r in map(as_record, records) if r.review]
    rows = []
    for (judge, category), items in sorted(_group_records(reviewed).items()):
        items = _ordered(items)
        result = compute_second_level(
            [r.human_label for r in items],
            [r.review.get("first_label") for r in items],
            [r.review.get("first_status", "ok") for r in items],
            [r.label for r in items],
            [r.status for r in items],
            [r.cluster for r in items],
            n_boot=n_boot,
            seed=seed,
            confidence=confidence,
        )
        first = items[0]
        unreadable = sum(1 for r in items if r.review.get("status", "ok") not in ("ok", "skipped"))
        reasons = result.pop("reasons")
        values = {"model": first.model, "reviews": first.reviews or "", **result, "unreadable_reviews": unreadable}
        rows.append(MetricRow.of(judge, category, values, reasons))
    return rows
