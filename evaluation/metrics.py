"""Judge metrics against human labels: pure functions, no I/O.

The headline numbers treat a judge output without a label (``invalid``, ``refusal`` or ``error``)
as a wrong answer: a miss on a positive example, a false alarm on a negative one. A judge that
declines or babbles on the hard examples must not look better for it. The same numbers on the
valid outputs only, and the coverage (share of outputs with a label), stand beside the headline.

Every undefined number is NaN and comes with a reason in ``reasons`` (e.g. AUROC of a judge that
gives no probabilities), so a report never shows a bare NaN.

Counting conventions:
    * precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2 TP / (2 TP + FP + FN); F1 is 0
      when TP is 0 but an error was made, NaN only when there is nothing positive on either side.
    * the bootstrap interval resamples examples, or whole clusters when ``groups`` is given (e.g.
      the example id, so that the repeats of one example move together; or the underlying
      question), and reports the percentile interval of the headline F1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    cohen_kappa_score,
    confusion_matrix,
    matthews_corrcoef,
    roc_auc_score,
)

from evaluation.records import NO_LABEL


__all__ = [
    "ALL",
    "NO_LABEL",
    "STATUSES",
    "bootstrap_f1_ci",
    "compute_binary_metrics",
    "compute_second_level",
    "count_flips",
    "effective_predictions",
    "f1_from_counts",
    "tp_fp_fn",
]

STATUSES = ("ok", "invalid", "refusal", "error")
# The category name of the rows that pool every category of a judge.
ALL = "all"
_NAN = float("nan")


def _as_arrays(
    y_true: Sequence[int], y_pred: Sequence[int | None], statuses: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Human labels, predictions (-1 where none) and statuses as arrays, checked for shape and values."""
    true = np.asarray([int(v) for v in y_true], dtype=np.int64)
    if statuses is None:
        statuses = ["ok" if p is not None and p in (0, 1) else "invalid" for p in y_pred]
    status = np.asarray(list(statuses), dtype=object)
    if not (len(true) == len(y_pred) == len(status)):
        raise ValueError(
            f"field 'predictions': expected as many predictions and statuses as references ({len(true)}), "
            f"got {len(y_pred)} predictions and {len(status)} statuses"
        )
    bad = [s for s in status if s not in STATUSES]
    if bad:
        raise ValueError(f"field 'statuses': expected one of {STATUSES}, got {bad[0]!r}")
    if np.any((true != 0) & (true != 1)):
        raise ValueError(f"field 'references': expected 0 or 1, got {sorted(set(true.tolist()))}")
    pred = np.full(len(true), -1, dtype=np.int64)
    for i, (p, s) in enumerate(zip(y_pred, status)):
        if s == "ok":
            if p is None or int(p) not in (0, 1):
                raise ValueError(f"field 'predictions': expected 0 or 1 where status is 'ok', got {p!r} at {i}")
            pred[i] = int(p)
    return true, pred, status


def effective_predictions(
    y_true: Sequence[int], y_pred: Sequence[int | None], statuses: Sequence[str] | None = None
) -> np.ndarray:
    """Predictions with every unlabelled output turned into the wrong answer (the headline rule)."""
    true, pred, status = _as_arrays(y_true, y_pred, statuses)
    return np.where(status == "ok", pred, 1 - true)


def f1_from_counts(tp: float, fp: float, fn: float) -> float:
    """F1 of the positive class from counts; NaN when there is nothing positive on either side."""
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else _NAN


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else _NAN


def _counts(true: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int]:
    if len(true) == 0:
        return 0, 0, 0, 0
    tn, fp, fn, tp = confusion_matrix(true, pred, labels=[0, 1]).ravel()
    return int(tp), int(fp), int(tn), int(fn)


def tp_fp_fn(true: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """True positives, false positives and false negatives (what F1 needs)."""
    tp, fp, _, fn = _counts(true, pred)
    return tp, fp, fn


def _cluster_counts(true: np.ndarray, pred: np.ndarray, groups: Sequence[Any] | None) -> np.ndarray:
    """Per cluster (tp, fp, fn) counts; every item is its own cluster when ``groups`` is None."""
    tp = ((pred == 1) & (true == 1)).astype(np.int64)
    fp = ((pred == 1) & (true == 0)).astype(np.int64)
    fn = ((pred == 0) & (true == 1)).astype(np.int64)
    per_item = np.stack([tp, fp, fn], axis=1)
    if groups is None:
        return per_item
    _, index = np.unique(np.asarray([str(g) for g in groups], dtype=object), return_inverse=True)
    clusters = np.zeros((index.max() + 1, 3), dtype=np.int64)
    np.add.at(clusters, index, per_item)
    return clusters


def _resampled_f1(clusters: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """F1 of every resample: ``draws`` picks clusters (n_boot x n_clusters) of per-cluster (tp, fp, fn)."""
    sums = clusters[draws].sum(axis=1)  # (n_boot, 3): tp, fp, fn
    denominator = 2 * sums[:, 0] + sums[:, 1] + sums[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * sums[:, 0] / np.maximum(denominator, 1), np.nan)


def _bootstrap(
    true: np.ndarray,
    predictions: Sequence[np.ndarray],
    groups: Sequence[Any] | None,
    *,
    n_boot: int,
    seed: int,
    confidence: float,
) -> tuple[float, float, str]:
    """The one cluster bootstrap: percentile interval of F1 (one prediction array) or of its change (two).

    Every prediction array is scored on the same resamples, so a change is paired.
    """
    if len(true) == 0:
        return _NAN, _NAN, "no examples"
    if n_boot <= 0:
        return _NAN, _NAN, "bootstrap disabled (n_boot=0)"
    clusters = [_cluster_counts(true, pred, groups) for pred in predictions]
    if len(clusters[0]) < 2:
        return _NAN, _NAN, "one cluster only: nothing to resample"
    draws = np.random.default_rng(seed).integers(0, len(clusters[0]), size=(n_boot, len(clusters[0])))
    scores = [_resampled_f1(c, draws) for c in clusters]
    statistic = scores[0] if len(scores) == 1 else scores[1] - scores[0]
    if np.all(np.isnan(statistic)):
        return _NAN, _NAN, "no positives in labels or predictions in any resample"
    alpha = (1 - confidence) / 2
    low, high = np.nanquantile(statistic, [alpha, 1 - alpha])
    return float(low), float(high), ""


def bootstrap_f1_ci(
    y_true: Sequence[int],
    y_eff: Sequence[int],
    groups: Sequence[Any] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, str]:
    """Percentile bootstrap interval of F1 for already-effective predictions.

    Returns:
        ``(low, high, reason)``; ``reason`` is empty unless the interval is NaN.
    """
    true, pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_eff, dtype=np.int64)
    return _bootstrap(true, [pred], groups, n_boot=n_boot, seed=seed, confidence=confidence)


def _kappa_mcc(true: np.ndarray, pred: np.ndarray, reasons: dict[str, str], suffix: str = "") -> tuple[float, float]:
    if len(true) == 0:
        return _NAN, _NAN
    one_class = len(set(true.tolist()) | set(pred.tolist())) == 1
    if one_class:
        reasons[f"kappa{suffix}"] = "labels and predictions all in one class (chance agreement is 1)"
        kappa = _NAN
    else:
        kappa = float(cohen_kappa_score(true, pred, labels=[0, 1]))
    if len(set(true.tolist())) == 1 or len(set(pred.tolist())) == 1:
        reasons[f"mcc{suffix}"] = "labels or predictions all in one class (MCC undefined)"
        mcc = _NAN
    else:
        mcc = float(matthews_corrcoef(true, pred))
    return kappa, mcc


def _probability_metrics(
    true: np.ndarray, p_positive: Sequence[float | None] | None, reasons: dict[str, str]
) -> tuple[float, float, int]:
    if p_positive is None:
        probs = np.full(len(true), np.nan)
    else:
        probs = np.asarray([_NAN if p is None else float(p) for p in p_positive], dtype=float)
        if len(probs) != len(true):
            raise ValueError(f"field 'p_positive': expected {len(true)} values, got {len(probs)}")
    has = ~np.isnan(probs)
    if not has.any():
        reasons["auroc"] = reasons["auprc"] = "no P(positive) from this judge"
        return _NAN, _NAN, 0
    if len(set(true[has].tolist())) < 2:
        reasons["auroc"] = reasons["auprc"] = "one human label class only among items with P(positive)"
        return _NAN, _NAN, int(has.sum())
    auroc = float(roc_auc_score(true[has], probs[has]))
    auprc = float(average_precision_score(true[has], probs[has]))
    return auroc, auprc, int(has.sum())


def compute_binary_metrics(
    y_true: Sequence[int],
    y_pred: Sequence[int | None],
    statuses: Sequence[str] | None = None,
    p_positive: Sequence[float | None] | None = None,
    groups: Sequence[Any] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Every first-level metric of one judge on one set of examples.

    Args:
        y_true: human labels (1 = the finding is present).
        y_pred: the judge's labels; ignored (may be None) where the status is not ``ok``.
        statuses: ``ok``, ``invalid``, ``refusal`` or ``error`` per item; default: ``ok`` where a
            label is given, ``invalid`` where it is None.
        p_positive: the judge's P(positive) per item, None where unknown.
        groups: cluster of each item for the bootstrap (None: each item on its own).
        n_boot: bootstrap resamples (0 disables the interval).
        seed: bootstrap seed.
        confidence: interval level.

    Returns:
        A flat dict: ``n``, ``tp``, ``fp``, ``tn``, ``fn``, ``precision``, ``recall``, ``f1``,
        ``accuracy``, ``kappa``, ``mcc`` (headline: unlabelled = wrong), ``f1_ci_low``,
        ``f1_ci_high``, ``coverage``, ``n_valid``, ``precision_valid``, ``recall_valid``,
        ``f1_valid``, ``accuracy_valid``, ``kappa_valid``, ``mcc_valid``, the counts and rates of
        ``invalid``, ``refusal`` and ``error``, ``auroc``, ``auprc``, ``n_prob`` and ``reasons``
        (metric name -> why it is NaN).
    """
    true, pred, status = _as_arrays(y_true, y_pred, statuses)
    reasons: dict[str, str] = {}
    n = len(true)
    eff = np.where(status == "ok", pred, 1 - true)
    tp, fp, tn, fn = _counts(true, eff)
    out: dict[str, Any] = {"n": n, "tp": tp, "fp": fp, "tn": tn, "fn": fn}
    out["precision"] = _ratio(tp, tp + fp)
    out["recall"] = _ratio(tp, tp + fn)
    out["f1"] = f1_from_counts(tp, fp, fn)
    out["accuracy"] = _ratio(tp + tn, n)
    out["kappa"], out["mcc"] = _kappa_mcc(true, eff, reasons)
    low, high, why = bootstrap_f1_ci(true, eff, groups, n_boot=n_boot, seed=seed, confidence=confidence)
    out["f1_ci_low"], out["f1_ci_high"] = low, high
    if why:
        reasons["f1_ci_low"] = reasons["f1_ci_high"] = why

    ok = status == "ok"
    out["n_valid"] = int(ok.sum())
    out["coverage"] = _ratio(out["n_valid"], n)
    vtp, vfp, vtn, vfn = _counts(true[ok], pred[ok])
    out["precision_valid"] = _ratio(vtp, vtp + vfp)
    out["recall_valid"] = _ratio(vtp, vtp + vfn)
    out["f1_valid"] = f1_from_counts(vtp, vfp, vfn)
    out["accuracy_valid"] = _ratio(vtp + vtn, out["n_valid"])
    out["kappa_valid"], out["mcc_valid"] = _kappa_mcc(true[ok], pred[ok], reasons, "_valid")
    for name in ("invalid", "refusal", "error"):
        count = int((status == name).sum())
        out[f"n_{name}"] = count
        out[f"{name}_rate"] = _ratio(count, n)
    out["auroc"], out["auprc"], out["n_prob"] = _probability_metrics(true, p_positive, reasons)
    out["reasons"] = _explain_nans(out, reasons, n, tp, fp, fn, out["n_valid"], vtp, vfp, vfn)
    return out


def _explain_nans(
    out: dict[str, Any],
    reasons: dict[str, str],
    n: int,
    tp: int,
    fp: int,
    fn: int,
    nv: int,
    vtp: int,
    vfp: int,
    vfn: int,
) -> dict[str, str]:
    """Attach a reason to every NaN that has none yet (counting reasons are derived here)."""
    if n == 0:
        return {k: "no examples" for k, v in out.items() if isinstance(v, float) and math.isnan(v)}
    derived = {
        "precision": "no positive predictions (TP + FP = 0)" if tp + fp == 0 else "",
        "recall": "no positive human labels (TP + FN = 0)" if tp + fn == 0 else "",
        "f1": "no positives in labels or predictions" if 2 * tp + fp + fn == 0 else "",
        "precision_valid": "no valid outputs" if nv == 0 else "no positive predictions among valid outputs",
        "recall_valid": "no valid outputs" if nv == 0 else "no positive human labels among valid outputs",
        "f1_valid": "no valid outputs" if nv == 0 else "no positives among valid outputs",
        "accuracy_valid": "no valid outputs",
        "kappa_valid": "no valid outputs",
        "mcc_valid": "no valid outputs",
    }
    for key, value in out.items():
        if isinstance(value, float) and math.isnan(value) and key not in reasons:
            reasons[key] = derived.get(key) or "undefined for these examples"
    return reasons


def compute_second_level(
    y_true: Sequence[int],
    first_pred: Sequence[int | None],
    first_status: Sequence[str],
    final_pred: Sequence[int | None],
    final_status: Sequence[str],
    groups: Sequence[Any] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """What a second-level review did to a first-level judge's verdicts on the same examples.

    A *flip* changes one label into the other. It *fixed* a verdict when the first label was wrong
    and the new one is right, and *broke* one in the opposite case. A first answer without a label
    (invalid, refusal) that the review turns into a label was *rescued* (``rescued_right`` of them
    correctly). ``f1_change`` = F1 after - F1 before (headline rule: no label = wrong), with a
    paired bootstrap interval (the same resamples before and after).
    """
    true, p1, s1 = _as_arrays(y_true, first_pred, first_status)
    _, p2, s2 = _as_arrays(y_true, final_pred, final_status)
    before = np.where(s1 == "ok", p1, 1 - true)
    after = np.where(s2 == "ok", p2, 1 - true)
    out: dict[str, Any] = {"n": len(true), **_flip_counts(true, p1, s1, p2, s2)}
    out["f1_before"] = f1_from_counts(*tp_fp_fn(true, before))
    out["f1_after"] = f1_from_counts(*tp_fp_fn(true, after))
    out["f1_change"] = out["f1_after"] - out["f1_before"]
    low, high, why = _bootstrap(true, [before, after], groups, n_boot=n_boot, seed=seed, confidence=confidence)
    out["f1_change_ci_low"], out["f1_change_ci_high"] = low, high
    reasons = {}
    if why:
        reasons["f1_change_ci_low"] = reasons["f1_change_ci_high"] = why
    for key in ("f1_before", "f1_after", "f1_change"):
        if math.isnan(out[key]):
            reasons[key] = "no examples" if not len(true) else "no positives in labels or predictions"
    out["reasons"] = reasons
    return out


def _flip_counts(true: np.ndarray, p1: np.ndarray, s1: np.ndarray, p2: np.ndarray, s2: np.ndarray) -> dict[str, int]:
    before = np.where(s1 == "ok", p1, 1 - true)
    after = np.where(s2 == "ok", p2, 1 - true)
    labelled1, labelled2 = s1 == "ok", s2 == "ok"
    flipped = labelled1 & labelled2 & (p1 != p2)
    rescued = ~labelled1 & labelled2
    right1, right2 = before == true, after == true
    return {
        "flips": int(flipped.sum()),
        "fixed": int((flipped & ~right1 & right2).sum()),
        "broken": int((flipped & right1 & ~right2).sum()),
        "rescued": int(rescued.sum()),
        "rescued_right": int((rescued & right2).sum()),
        "lost": int((labelled1 & ~labelled2).sum()),
        "unchanged_wrong": int((~flipped & ~rescued & ~right1).sum()),
    }


def count_flips(
    y_true: Sequence[int],
    first_pred: Sequence[int | None],
    first_status: Sequence[str],
    final_pred: Sequence[int | None],
    final_status: Sequence[str],
) -> dict[str, int]:
    """The one flip counter: what a review did to first-level verdicts (see :func:`compute_second_level`).

    Returns:
        ``flips``, ``fixed``, ``broken``, ``rescued``, ``rescued_right``, ``lost``, ``unchanged_wrong``.
    """
    true, p1, s1 = _as_arrays(y_true, first_pred, first_status)
    _, p2, s2 = _as_arrays(y_true, final_pred, final_status)
    return _flip_counts(true, p1, s1, p2, s2)
