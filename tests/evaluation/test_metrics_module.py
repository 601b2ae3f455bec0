"""The judge metrics as a local `evaluate` module, loaded by path with no hub."""

from __future__ import annotations

import math
from pathlib import Path

import evaluate
import pytest

from evaluation.metric_module import MODULE_PATH
from evaluation.metrics import compute_binary_metrics


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(MODULE_PATH)


def test_module_loads_by_path_and_matches_the_library(metric):
    # Table A of test_metrics.py: TP=3 FP=2 TN=3 FN=2 with one invalid and one refusal -> F1 0.6.
    true = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    pred = [1, 1, 1, 0, None, 0, 0, 0, 1, None]
    status = ["ok", "ok", "ok", "ok", "invalid", "ok", "ok", "ok", "ok", "refusal"]
    result = metric.compute(predictions=pred, references=true, statuses=status, n_boot=200, seed=1)
    assert result["f1"] == pytest.approx(0.6)
    assert result["f1_valid"] == pytest.approx(0.75)
    assert result["coverage"] == pytest.approx(0.8)
    expected = compute_binary_metrics(true, pred, status, n_boot=200, seed=1)
    assert (result["f1_ci_low"], result["f1_ci_high"]) == (expected["f1_ci_low"], expected["f1_ci_high"])


def test_minus_one_means_no_label_and_probabilities_give_auroc(metric):
    # -1 without statuses -> invalid: true [1, 0, 1, 0], effective [1, 0, 0, 0] -> TP1 FN1 -> F1 2/3.
    result = metric.compute(
        predictions=[1, 0, -1, 0], references=[1, 0, 1, 0], p_positive=[0.9, 0.2, None, 0.4], n_boot=0
    )
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["n_invalid"] == 1
    # Among the three with P: positives {0.9} vs negatives {0.2, 0.4}: AUROC 1.
    assert result["auroc"] == pytest.approx(1.0)
    assert math.isnan(result["f1_ci_low"]) and "disabled" in result["reasons"]["f1_ci_low"]


def test_module_can_be_loaded_by_its_repository_path(monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    metric = evaluate.load("evaluation/metric_module/judge_metrics.py")
    assert metric.compute(predictions=[1, 0], references=[1, 0], n_boot=0)["f1"] == 1.0
