"""Metrics against hand-computed tables (each expectation is worked out in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.metric_rows import compute_agreement, compute_metric_rows, compute_second_level_rows, fleiss_kappa
from evaluation.metrics import bootstrap_f1_ci, compute_binary_metrics, compute_second_level, effective_predictions


# Table A: ten examples, five positive, five negative.
#   i  true  pred  status    effective  outcome
#   0   1     1    ok          1         TP
#   1   1     1    ok          1         TP
#   2   1     1    ok          1         TP
#   3   1     0    ok          0         FN
#   4   1     -    invalid     0         FN   (invalid on a positive = a miss)
#   5   0     0    ok          0         TN
#   6   0     0    ok          0         TN
#   7   0     0    ok          0         TN
#   8   0     1    ok          1         FP
#   9   0     -    refusal     1         FP   (refusal on a negative = a false alarm)
# Headline: TP=3 FP=2 TN=3 FN=2 -> P = 3/5, R = 3/5, F1 = 6/(6+2+2) = 0.6, acc = 6/10.
#   kappa: po = 0.6, pe = 0.5*0.5 + 0.5*0.5 = 0.5 -> (0.6-0.5)/(1-0.5) = 0.2
#   MCC = (3*3 - 2*2) / sqrt(5*5*5*5) = 5/25 = 0.2
# Valid only (items 0-3, 5-8): TP=3 FP=1 TN=3 FN=1 -> P = R = F1 = acc = 0.75, coverage 8/10.
#   kappa_valid: po = .75, pe = .5 -> .5; MCC_valid = (9-1)/sqrt(4^4) = 0.5
TRUE_A = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
PRED_A = [1, 1, 1, 0, None, 0, 0, 0, 1, None]
STATUS_A = ["ok", "ok", "ok", "ok", "invalid", "ok", "ok", "ok", "ok", "refusal"]


def test_invalid_and_refusal_count_as_wrong_answers():
    eff = effective_predictions(TRUE_A, PRED_A, STATUS_A)
    assert eff.tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 1, 1]


def test_headline_metrics_match_hand_computed_table():
    m = compute_binary_metrics(TRUE_A, PRED_A, STATUS_A, n_boot=0)
    assert (m["n"], m["tp"], m["fp"], m["tn"], m["fn"]) == (10, 3, 2, 3, 2)
    assert m["precision"] == pytest.approx(0.6)
    assert m["recall"] == pytest.approx(0.6)
    assert m["f1"] == pytest.approx(0.6)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["kappa"] == pytest.approx(0.2)
    assert m["mcc"] == pytest.approx(0.2)


def test_valid_only_metrics_and_coverage_stand_beside_the_headline():
    m = compute_binary_metrics(TRUE_A, PRED_A, STATUS_A, n_boot=0)
    assert m["n_valid"] == 8
    assert m["coverage"] == pytest.approx(0.8)
    for key in ("precision_valid", "recall_valid", "f1_valid", "accuracy_valid"):
        assert m[key] == pytest.approx(0.75), key
    assert m["kappa_valid"] == pytest.approx(0.5)
    assert m["mcc_valid"] == pytest.approx(0.5)
    assert (m["n_invalid"], m["n_refusal"], m["n_error"]) == (1, 1, 0)
    assert m["invalid_rate"] == pytest.approx(0.1)
    assert m["refusal_rate"] == pytest.approx(0.1)
    assert m["error_rate"] == 0.0


def test_backend_error_is_a_wrong_answer_too():
    # true [1, 0], both errors -> effective [0, 1]: TP=0 FP=1 FN=1 -> F1 = 0/(0+1+1) = 0.
    m = compute_binary_metrics([1, 0], [None, None], ["error", "error"], n_boot=0)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (0, 1, 1, 0)
    assert m["f1"] == 0.0
    assert m["error_rate"] == 1.0
    assert m["coverage"] == 0.0
    assert math.isnan(m["f1_valid"]) and m["reasons"]["f1_valid"] == "no valid outputs"


def test_status_defaults_to_invalid_where_prediction_is_missing():
    m = compute_binary_metrics([1, 0, 1], [1, None, 1], n_boot=0)
    assert m["n_invalid"] == 1 and m["fp"] == 1 and m["tp"] == 2


def test_probability_metrics_match_hand_computed_auroc_and_auprc():
    # Pairs (positive, negative): 0.35>0.1 yes, 0.35>0.4 no, 0.8>0.1 yes, 0.8>0.4 yes -> AUROC 3/4.
    # Ranked: 0.8 (pos) P=1 R=.5; 0.4 (neg); 0.35 (pos) P=2/3 R=1 -> AP = .5*1 + .5*2/3 = 5/6.
    m = compute_binary_metrics([0, 0, 1, 1], [0, 0, 0, 1], p_positive=[0.1, 0.4, 0.35, 0.8], n_boot=0)
    assert m["auroc"] == pytest.approx(0.75)
    assert m["auprc"] == pytest.approx(5 / 6)
    assert m["n_prob"] == 4
    assert "auroc" not in m["reasons"]


@pytest.mark.parametrize(
    ("p_positive", "true", "reason"),
    [
        pytest.param(None, [0, 1], "no P(positive) from this judge", id="no_probabilities"),
        pytest.param([None, None], [0, 1], "no P(positive) from this judge", id="all_missing"),
        pytest.param([0.2, 0.9], [1, 1], "one human label class only", id="one_class"),
    ],
)
def test_probability_metrics_are_nan_with_a_reason(p_positive, true, reason):
    m = compute_binary_metrics(true, [1, 1], p_positive=p_positive, n_boot=0)
    assert math.isnan(m["auroc"]) and math.isnan(m["auprc"])
    assert m["reasons"]["auroc"].startswith(reason)


def test_every_nan_carries_a_reason():
    # All negatives judged negative: precision, recall, F1, kappa and MCC are undefined.
    m = compute_binary_metrics([0, 0, 0], [0, 0, 0], n_boot=100)
    nan_keys = {k for k, v in m.items() if isinstance(v, float) and math.isnan(v)}
    assert {"precision", "recall", "f1", "kappa", "mcc", "auroc", "f1_ci_low"} <= nan_keys
    assert nan_keys <= set(m["reasons"])
    assert m["accuracy"] == 1.0
    assert "no positives" in m["reasons"]["f1"]


def test_f1_is_zero_not_nan_when_only_wrong_positives_exist():
    # true [1, 0], pred [0, 1]: TP=0 FP=1 FN=1 -> F1 = 0; precision 0/1 = 0; recall 0/1 = 0.
    m = compute_binary_metrics([1, 0], [0, 1], n_boot=0)
    assert (m["f1"], m["precision"], m["recall"]) == (0.0, 0.0, 0.0)


def test_bootstrap_of_a_perfect_judge_is_a_point():
    low, high, reason = bootstrap_f1_ci([1, 0, 1, 0, 1], [1, 0, 1, 0, 1], n_boot=200, seed=3)
    assert (low, high, reason) == (1.0, 1.0, "")


def test_clustered_bootstrap_resamples_whole_clusters():
    # Cluster A = one TP; cluster B = one FP and one FN (same group).
    # Resamples of 2 clusters: AA -> F1 = 4/4 = 1; AB -> 2/(2+1+1) = 0.5; BB -> 0.
    # P(AA) = P(BB) = 1/4, so the 2.5% / 97.5% percentiles are 0 and 1.
    true, pred, groups = [1, 0, 1], [1, 1, 0], ["A", "B", "B"]
    low, high, _ = bootstrap_f1_ci(true, pred, groups, n_boot=2000, seed=0)
    assert (low, high) == (0.0, 1.0)
    rng_values = set()
    for seed in range(30):
        lo, hi, _ = bootstrap_f1_ci(true, pred, groups, n_boot=20, seed=seed, confidence=0.5)
        rng_values |= {lo, hi}
    # Interpolated quantiles of values in {0, .5, 1} stay inside [0, 1] and hit .5 often.
    assert 0.5 in rng_values and min(rng_values) >= 0 and max(rng_values) <= 1


def test_bootstrap_is_seeded_and_contains_the_point_estimate():
    rng = np.random.default_rng(1)
    true = rng.integers(0, 2, 200)
    pred = np.where(rng.random(200) < 0.8, true, 1 - true)
    m1 = compute_binary_metrics(true.tolist(), pred.tolist(), n_boot=500, seed=7)
    m2 = compute_binary_metrics(true.tolist(), pred.tolist(), n_boot=500, seed=7)
    assert (m1["f1_ci_low"], m1["f1_ci_high"]) == (m2["f1_ci_low"], m2["f1_ci_high"])
    assert m1["f1_ci_low"] < m1["f1"] < m1["f1_ci_high"]
    assert m1["f1_ci_high"] - m1["f1_ci_low"] < 0.2


def test_fleiss_kappa_and_percent_agreement_match_hand_computation():
    # 3 items x 3 repeats, answer categories 1 / 0 / none.
    #   item 1: 1 1 1     -> counts (3,0,0), P1 = (9-3)/6 = 1
    #   item 2: 1 1 0     -> counts (2,1,0), P2 = (4+1-3)/6 = 1/3
    #   item 3: 0 0 none  -> counts (0,2,1), P3 = 1/3
    # P_bar = 5/9; p(1) = 5/9, p(0) = 3/9, p(none) = 1/9 -> P_e = 35/81
    # kappa = (45/81 - 35/81) / (46/81) = 10/46 = 5/23; all-agree share = 1/3.
    agreement = compute_agreement([[1, 1, 1], [1, 1, 0], [0, 0, "none"]])
    assert agreement["fleiss_kappa"] == pytest.approx(5 / 23)
    assert agreement["percent_agreement"] == pytest.approx(1 / 3)
    assert agreement["mean_pairwise_agreement"] == pytest.approx(5 / 9)
    assert fleiss_kappa(np.array([[3, 0, 0], [2, 1, 0], [0, 2, 1]])) == pytest.approx(5 / 23)


def test_agreement_edge_cases_state_their_reason():
    one = compute_agreement([[1], [0]])
    assert math.isnan(one["fleiss_kappa"]) and one["reasons"]["fleiss_kappa"] == "needs at least 2 repeats"
    same = compute_agreement([[1, 1], [1, 1]])
    assert same["percent_agreement"] == 1.0
    assert math.isnan(same["fleiss_kappa"]) and "one category" in same["reasons"]["fleiss_kappa"]
    partial = compute_agreement([[1, 1, 1], [0, 0, 0], [1, 0]])
    assert partial["n_items"] == 2 and partial["n_incomplete"] == 1


# Table B (second level), seven examples:
#   i true first  final  what                 first right  final right
#   0  1    1      0     flip                   yes          no    -> broke
#   1  1    0      1     flip                   no           yes   -> fixed
#   2  0    1      0     flip                   no           yes   -> fixed
#   3  0    0      0     kept                   yes          yes
#   4  1   inv     1     rescued                no (miss)    yes   -> rescued right
#   5  0    0      1     flip                   yes          no    -> broke
#   6  1    0      0     kept                   no           no    -> unchanged wrong
# flips 4, fixed 2, broken 2, rescued 1 (right 1), unchanged wrong 1.
# Before (effective [1,0,1,0,0,0,0]): TP=1 FP=1 FN=3 -> F1 = 2/(2+1+3) = 1/3.
# After [0,1,0,0,1,1,0]: TP=2 FP=1 FN=2 -> F1 = 4/7; change = 4/7 - 1/3 = 5/21.
def test_second_level_flip_counts_and_f1_change_match_hand_table():
    result = compute_second_level(
        [1, 1, 0, 0, 1, 0, 1],
        [1, 0, 1, 0, None, 0, 0],
        ["ok", "ok", "ok", "ok", "invalid", "ok", "ok"],
        [0, 1, 0, 0, 1, 1, 0],
        ["ok"] * 7,
        n_boot=300,
    )
    counts = [result[k] for k in ("flips", "fixed", "broken", "rescued", "rescued_right", "unchanged_wrong")]
    assert counts == [4, 2, 2, 1, 1, 1]
    assert result["f1_before"] == pytest.approx(1 / 3)
    assert result["f1_after"] == pytest.approx(4 / 7)
    assert result["f1_change"] == pytest.approx(5 / 21)
    assert result["f1_change_ci_low"] <= result["f1_change"] <= result["f1_change_ci_high"]


def _record(judge, category, example_id, repeat, human, label, status="ok", **extra):
    return {
        "judge": judge,
        "category": category,
        "example_id": example_id,
        "repeat": repeat,
        "human_label": human,
        "label": label,
        "status": status,
        "group": example_id,
        **extra,
    }


def test_metric_rows_pool_repeats_and_categories():
    # Judge j, category a: e1 (true 1) answers 1, 1; e2 (true 0) answers 0, 1.
    #   pooled: TP=2, TN=1, FP=1 -> F1 = 4/5. Repeat 0: TP1 TN1 -> F1 1; repeat 1: TP1 FP1 -> 2/3.
    #   agreement: e1 agrees, e2 not -> 0.5.
    # Category b: e3 (true 1) invalid twice -> FN=2 -> F1 = 0.
    # All: TP=2 TN=1 FP=1 FN=2 -> F1 = 4/(4+1+2) = 4/7.
    records = [
        _record("j", "a", "e1", 0, 1, 1),
        _record("j", "a", "e1", 1, 1, 1),
        _record("j", "a", "e2", 0, 0, 0),
        _record("j", "a", "e2", 1, 0, 1),
        _record("j", "b", "e3", 0, 1, None, "invalid"),
        _record("j", "b", "e3", 1, 1, None, "invalid"),
    ]
    rows = {row["category"]: row for row in compute_metric_rows(records, n_boot=50)}
    assert rows["a"]["f1"] == pytest.approx(0.8)
    assert rows["a"]["f1_repeat_mean"] == pytest.approx((1 + 2 / 3) / 2)
    assert rows["a"]["percent_agreement"] == pytest.approx(0.5)
    assert rows["a"]["n_examples"] == 2 and rows["a"]["n"] == 4
    assert rows["b"]["f1"] == 0.0 and rows["b"]["invalid_rate"] == 1.0
    assert rows["all"]["f1"] == pytest.approx(4 / 7)


def test_second_level_rows_use_the_review_details():
    review = {"first_label": 0, "first_status": "ok", "correct": False, "flipped": True}
    records = [
        _record("j+review", "a", "e1", 0, 1, 1, review=review),
        _record("j+review", "a", "e2", 0, 0, 0, review={**review, "correct": True, "flipped": False}),
    ]
    rows = {row["category"]: row for row in compute_second_level_rows(records, n_boot=0)}
    # e1 flipped 0 -> 1 on a positive: fixed. Before: FN only -> F1 0; after: TP -> F1 1.
    assert (rows["a"]["flips"], rows["a"]["fixed"], rows["a"]["broken"]) == (1, 1, 0)
    assert rows["a"]["f1_change"] == pytest.approx(1.0)


def test_bad_input_names_the_field():
    with pytest.raises(ValueError, match="field 'statuses'"):
        compute_binary_metrics([1], [1], ["maybe"])
    with pytest.raises(ValueError, match="field 'predictions'"):
        compute_binary_metrics([1, 0], [1])
    with pytest.raises(ValueError, match="field 'references'"):
        compute_binary_metrics([2], [1])
