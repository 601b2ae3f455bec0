"""The transfer table: in-source test rows beside each held-out source, with the gap (pure, synthetic rows)."""

from __future__ import annotations

import math

import pytest

from evaluation.metrics import compute_binary_metrics
from evaluation.transfer import IN_SOURCE, held_out_sources, transfer_metrics, transfer_table, wants_transfer_table


def _rows(judge: str, source: str, pairs: list[tuple[int, int]], start: int = 0) -> list[dict]:
    """Records of one judge on one source: (human label, judge label); P(positive) follows the label."""
    return [
        {
            "judge": judge,
            "kind": "tuned" if judge == "tuned" else "reference",
            "category": "jailbreak",
            "example_id": f"{source}-{start + i}",
            "repeat": 0,
            "human_label": human,
            "label": label,
            "status": "ok",
            "p_positive": 0.2 + 0.6 * label if i % 3 else 0.5,
            "group": f"{source}-{start + i}",
            "source": source,
        }
        for i, (human, label) in enumerate(pairs)
    ]


GOOD = [(1, 1)] * 8 + [(0, 0)] * 8 + [(1, 0), (0, 1)]  # F1 8/9
POOR = [(1, 1)] * 4 + [(1, 0)] * 4 + [(0, 0)] * 6 + [(0, 1)] * 4  # F1 0.5

DATA = {"sources": {"jailbreak": {"train": ["gptfuzz"], "evaluated": ["gptfuzz", "harmbench_val"]}}}


def test_held_out_sources_are_the_evaluated_sources_without_training_rows():
    assert held_out_sources(DATA) == {"jailbreak": ["harmbench_val"]}
    declared = {**DATA, "test_sources": ["harmbench_val", "begin"]}
    assert held_out_sources(declared) == {"jailbreak": ["harmbench_val"]}
    one = {"sources": {"jailbreak": {"train": ["gptfuzz"], "evaluated": ["gptfuzz"]}}}
    assert held_out_sources(one) == {"jailbreak": []}
    assert not wants_transfer_table(one)
    assert wants_transfer_table(DATA)
    assert not wants_transfer_table({})  # an old run.json without sources


def test_gap_is_held_out_minus_in_source_for_every_judge():
    records = _rows("tuned", "gptfuzz", GOOD) + _rows("tuned", "harmbench_val", POOR)
    records += _rows("reference/tfidf", "gptfuzz", POOR) + _rows("reference/tfidf", "harmbench_val", GOOD)
    slices = transfer_metrics(records, held_out_sources(DATA), n_boot=200)
    assert [(s.judge, s.rows) for s in slices] == [
        ("reference/tfidf", IN_SOURCE),
        ("reference/tfidf", "harmbench_val"),
        ("tuned", IN_SOURCE),
        ("tuned", "harmbench_val"),
    ]
    tuned_in, tuned_out = slices[2], slices[3]
    assert tuned_in.metrics["f1"] == pytest.approx(8 / 9)
    assert tuned_out.metrics["f1"] == pytest.approx(0.5)
    assert tuned_out.f1_gap == pytest.approx(0.5 - 8 / 9)
    assert tuned_out.auroc_gap == pytest.approx(tuned_out.metrics["auroc"] - tuned_in.metrics["auroc"])
    assert slices[1].f1_gap > 0 > tuned_out.f1_gap  # the floor transfers better in this synthetic run
    assert math.isnan(tuned_in.f1_gap)
    # One implementation: the held-out slice is exactly compute_binary_metrics on its rows.
    direct = compute_binary_metrics([h for h, _ in POOR], [p for _, p in POOR], n_boot=0)
    assert tuned_out.metrics["f1"] == direct["f1"] and tuned_out.metrics["n_examples"] == len(POOR)


def test_table_lists_held_out_sources_and_fills_every_cell():
    records = _rows("tuned", "gptfuzz", GOOD) + _rows("tuned", "harmbench_val", POOR)
    records += [{k: v for k, v in r.items() if k != "source"} for r in _rows("tuned", "gptfuzz", GOOD, start=100)]
    table = transfer_table(records, DATA, n_boot=200)
    assert "jailbreak: harmbench_val" in table.intro
    assert [row[3] for row in table.rows] == [IN_SOURCE, "held out: harmbench_val"]
    in_row, out_row = table.rows
    assert in_row[5] == str(2 * len(GOOD))  # rows of an old store (no source) count as in-source
    assert out_row[6].startswith("0.500 [") and out_row[8] == f"{0.5 - 8 / 9:+.3f}"
    assert all(cell.strip() for row in table.rows for cell in row)
    assert "nan" not in table.to_markdown().lower()


def test_a_slice_without_probabilities_says_why():
    records = _rows("tuned", "gptfuzz", GOOD) + _rows("tuned", "harmbench_val", POOR)
    for r in records:
        r["p_positive"] = None
    table = transfer_table(records, DATA, n_boot=50)
    assert table.rows[1][7].startswith("n/a [") and table.rows[1][9].startswith("n/a [")
    assert any("no P(positive)" in note for note in table.notes)
