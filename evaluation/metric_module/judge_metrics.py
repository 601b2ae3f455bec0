"""Judge metrics against human labels, as an ``evaluate`` metric module that loads by path.

``evaluate.load("evaluation/metric_module/judge_metrics.py")`` works offline (``evaluate.load("f1")``
needs the hub). The numbers are those of :func:`evaluation.metrics.compute_binary_metrics`, so a
training loop, a notebook and ``judgeforge report`` agree exactly.

Inputs:
    predictions: the judge's labels (0/1); None (or -1) where the judge gave no label.
    references: the human labels (0/1).
    statuses (optional keyword): ``ok`` / ``invalid`` / ``refusal`` / ``error`` per item; default:
        ``ok`` where a label was given, ``invalid`` elsewhere.
    p_positive (optional keyword): P(positive) per item (None where unknown), for AUROC / AUPRC.
    groups (optional keyword): cluster of each item for the bootstrap interval.
    n_boot, seed, confidence (optional keywords): bootstrap settings (1000, 0, 0.95).

Output: a flat dict of floats and ints (``f1``, ``f1_ci_low``, ``f1_ci_high``, ``precision``,
``recall``, ``accuracy``, ``kappa``, ``mcc``, ``f1_valid``, ``coverage``, the invalid / refusal /
error rates, ``auroc``, ``auprc`` and the confusion counts) plus ``reasons``: why each NaN is NaN.
The headline counts an unlabelled output as a wrong answer.
"""

import datasets
import evaluate

from evaluation.metrics import compute_binary_metrics


_CITATION = ""
_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of 0/1 labels, None or -1 where the judge gave none.
    references: list of 0/1 human labels.
    statuses: optional list of ok / invalid / refusal / error.
    p_positive: optional list of P(positive) (None where unknown).
    groups: optional list of bootstrap clusters.
Returns:
    dict of metrics (see the module docstring); ``reasons`` explains each NaN.
Examples:
    >>> metric = evaluate.load("evaluation/metric_module/judge_metrics.py")
    >>> metric.compute(predictions=[1, None], references=[1, 0], statuses=["ok", "refusal"])["f1"]
    0.6666666666666666
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class JudgeMetrics(evaluate.Metric):
    """Precision, recall, F1 (with bootstrap CI), accuracy, kappa, MCC, coverage, AUROC for judges."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=[],
        )

    def _compute(self, predictions, references, statuses=None, p_positive=None, groups=None, n_boot=1000,
                 seed=0, confidence=0.95):  # fmt: skip
        labels = [None if p is None or p == -1 else int(p) for p in predictions]
        return compute_binary_metrics(
            references, labels, statuses, p_positive, groups, n_boot=n_boot, seed=seed, confidence=confidence
        )
