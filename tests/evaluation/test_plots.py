"""The plots' legends sit beside the axes, never over the bars or the curves they explain."""

from __future__ import annotations

import pytest

import evaluation.plots as plots
from evaluation.records import JudgmentRecord


def _rows():
    rows = []
    for k, judge in enumerate(["smollm2/basic", "smollm2/criteria", "tuned", "tfidf", "refusal_phrases"]):
        for category in ["brand_harm", "data_leakage", "jailbreak", "malware", plots.ALL]:
            f1 = 0.95 - 0.05 * k  # tall bars: a legend inside the axes would cover them
            rows.append({"judge": judge, "category": category, "f1": f1, "f1_ci_low": f1 - 0.05,
                         "f1_ci_high": min(1.0, f1 + 0.05), "kind": "reference" if k > 2 else "prompted"})  # fmt: skip
    return rows


def _records():
    return [
        JudgmentRecord(
            judge=judge,
            kind="prompted",
            category="jailbreak",
            example_id=f"e{i}",
            repeat=0,
            human_label=i % 2,
            label=i % 2,
            status="ok",
            p_positive=(i % 10) / 10,
        )  # fmt: skip
        for judge in ("a/basic", "b/basic")
        for i in range(40)
    ]


@pytest.mark.parametrize(("draw", "data"), [(plots.plot_categories, _rows), (plots.plot_reliability, _records)])
def test_the_legend_is_outside_the_axes(tmp_path, monkeypatch, draw, data):
    seen = {}
    real_save = plots._save

    def save(fig, path):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        seen["legend"] = ax.get_legend().get_window_extent(renderer)
        seen["axes"] = ax.get_window_extent(renderer)
        real_save(fig, path)

    monkeypatch.setattr(plots, "_save", save)
    path = draw(data(), tmp_path / "plot.png")
    assert path is not None and path.stat().st_size > 0
    assert seen["legend"].x0 >= seen["axes"].x1  # entirely right of the plotting area
    # The saved image holds the legend too (bbox_inches="tight" grows the figure).
    from matplotlib.image import imread

    height, width = imread(path).shape[:2]
    assert width > height
