"""Plots of an evaluation run (matplotlib, Agg backend): F1 heatmap, per-category bars, reliability.

Each function takes metric rows (:func:`evaluation.metrics.compute_metric_rows`) or store records,
writes one PNG and returns its path, or None when there is nothing to draw (the report then says
why). Reference judges are hatched in the bars so that the floors stand out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evaluation import registry
from evaluation.metrics import ALL
from evaluation.records import JudgmentRecord, as_record


__all__ = ["plot_categories", "plot_heatmap", "plot_reliability"]

FLOOR = registry.floor_kind()
_MAX_BAR_JUDGES = 8


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _overall(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((r for r in rows if r["category"] == ALL), key=lambda r: -(r["f1"] if not _nan(r["f1"]) else -1))


def _legend_outside(ax: Any) -> None:
    """The legend right of the axes: inside, it covered the bars of the first categories."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")  # the figure grows to hold the legend beside the axes
    plt.close(fig)


def plot_heatmap(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Overall F1 of the prompted judges, models down and prompts across (None: no prompted judge)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prompted = [r for r in rows if r["category"] == ALL and r.get("kind") == registry.PROMPTED]
    if not prompted:
        return None
    models = list(dict.fromkeys(r["model"] for r in prompted))
    prompts = list(dict.fromkeys(r["prompt"] for r in prompted))
    grid = np.full((len(models), len(prompts)), np.nan)
    for r in prompted:
        grid[models.index(r["model"]), prompts.index(r["prompt"])] = r["f1"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(prompts), 1.2 + 0.6 * len(models)))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(grid), vmin=0, vmax=1, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(prompts)), prompts)
    ax.set_yticks(range(len(models)), [Path(m).name for m in models])
    for i in range(len(models)):
        for j in range(len(prompts)):
            value = grid[i, j]
            ax.text(j, i, "n/a" if np.isnan(value) else f"{value:.2f}", ha="center", va="center",
                    color="black" if np.isnan(value) or value >= 0.6 else "white")  # fmt: skip
    fig.colorbar(image, ax=ax, label="F1 (unlabelled = wrong)")
    ax.set_title("F1 by model × prompt")
    _save(fig, path)
    return path


def _bar_judges(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Judges for the per-category bars: every non-prompted judge, then the best prompted ones."""
    overall = _overall(rows)
    fixed = [r["judge"] for r in overall if r.get("kind") != registry.PROMPTED]
    prompted = sorted(
        (r for r in overall if r.get("kind") == registry.PROMPTED),
        key=lambda r: -(r["f1"] if not _nan(r["f1"]) else -1),
    )
    room = max(_MAX_BAR_JUDGES - len(fixed), 2)
    return fixed[:_MAX_BAR_JUDGES] + [r["judge"] for r in prompted[:room]]


def plot_categories(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """F1 per category with 95% intervals for up to eight judges (floors hatched)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    categories = sorted({r["category"] for r in rows} - {ALL})
    judges = _bar_judges(rows)
    if not categories or not judges:
        return None
    cells = {(r["judge"], r["category"]): r for r in rows}
    width = 0.8 / len(judges)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(categories)), 4.2))
    x = np.arange(len(categories))
    for k, judge in enumerate(judges):
        values, low, high = [], [], []
        for category in categories:
            r = cells.get((judge, category), {})
            f1 = r.get("f1", np.nan)
            f1 = np.nan if _nan(f1) else f1
            values.append(f1)
            lo, hi = r.get("f1_ci_low"), r.get("f1_ci_high")
            low.append(0 if _nan(lo) or np.isnan(f1) else f1 - lo)
            high.append(0 if _nan(hi) or np.isnan(f1) else hi - f1)
        hatch = "//" if cells.get((judge, ALL), {}).get("kind") == FLOOR else None
        ax.bar(x + k * width - 0.4 + width / 2, np.nan_to_num(values), width, yerr=[low, high], capsize=2,
               label=judge + (" (floor)" if hatch else ""), hatch=hatch)  # fmt: skip
    ax.set_xticks(x, categories, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1 (95% CI)")
    ax.set_title("F1 by category")
    _legend_outside(ax)
    _save(fig, path)
    return path


def plot_reliability(records: Sequence[JudgmentRecord | dict[str, Any]], path: Path, bins: int = 10) -> Path | None:
    """Binned P(positive) against the share of human positives, with the ECE (None: no probabilities)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_judge: dict[str, list[tuple[float, int]]] = {}
    for r in map(as_record, records):
        p = r.p_positive
        usable = p is not None and not (isinstance(p, float) and math.isnan(p)) and r.kind != registry.SECOND_LEVEL
        if usable and r.repeat == 0:
            by_judge.setdefault(r.judge, []).append((float(p), int(r.human_label)))
    if not by_judge:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k:", label="perfectly calibrated")
    edges = np.linspace(0, 1, bins + 1)
    for judge, pairs in sorted(by_judge.items()):
        probs, labels = np.array([p for p, _ in pairs]), np.array([y for _, y in pairs])
        index = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
        xs, ys, ece = [], [], 0.0
        for b in range(bins):
            mask = index == b
            if mask.any():
                xs.append(probs[mask].mean())
                ys.append(labels[mask].mean())
                ece += mask.mean() * abs(probs[mask].mean() - labels[mask].mean())
        ax.plot(xs, ys, "o-", label=f"{judge} (ECE {ece:.3f})")
    ax.set_xlabel("P(positive) (bin mean)")
    ax.set_ylabel("share of human positives")
    ax.set_title("Reliability (repeat 0)")
    _legend_outside(ax)
    _save(fig, path)
    return path
