"""The verdict-metrics callback: is the judge getting better, not just the loss going down?

At every evaluation the callback judges a fixed validation subset from logits
(:mod:`training.verdicts`) and logs F1, precision, recall, accuracy, AUROC and the invalid rate as
``eval_*`` next to the loss, so they reach the console, ``trainer_state.json``, W&B charts and
``metric_for_best_model``. Under W&B it also logs a table of sample verdicts under a new key per
evaluation step, to read what the judge says and not only how often it is right.

Every process judges the same rows (ZeRO-3 needs every rank in every forward pass); only the main
process writes to W&B.

``DivergenceCallback`` stops a run whose loss or gradient norm is no longer finite: transformers
logs such a loss as a running mean and trains on with NaN weights, which surfaces only at the end as
a judge that cannot be scored.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from training.verdicts import VerdictProbe, best_threshold, compute_verdict_metrics, judge_probes, prepare_probes


__all__ = ["DivergenceCallback", "TrainingDiverged", "VerdictMetricsCallback", "VerdictReport"]

logger = logging.getLogger(__name__)


@dataclass
class VerdictReport:
    """The verdicts of one evaluation."""

    step: int
    metrics: dict[str, float]
    p_positive: list[float | None] = field(repr=False)


class VerdictMetricsCallback(TrainerCallback):
    """Judge a fixed validation subset at every evaluation and log verdict metrics.

    Args:
        tokenizer: the tokenizer the model trains with.
        rows: the subset (SFT rows: ``messages``, ``id``, ``category``, ``label``), fixed for the run.
        verdict_words: ``{category: [positive, negative]}``.
        max_length: prompts longer than this are counted invalid (training truncates them).
        batch_size: rows per forward pass.
        table_rows: sample verdicts per W&B table (0: no table).
        trainer: the trainer whose ``log`` the metrics go through; set after the trainer is built.
    """

    def __init__(
        self,
        tokenizer: Any,
        rows: Sequence[Mapping[str, Any]],
        verdict_words: Mapping[str, Sequence[str]],
        *,
        max_length: int | None,
        batch_size: int = 8,
        table_rows: int = 16,
        trainer: Any = None,
    ):
        self.probes: list[VerdictProbe] = prepare_probes(tokenizer, rows, verdict_words, max_length)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.batch_size = batch_size
        self.table_rows = table_rows
        self.trainer = trainer
        self.reports: list[VerdictReport] = []
        invalid = [p for p in self.probes if p.reason]
        if invalid:
            reasons = sorted({p.reason for p in invalid})
            logger.warning("%d of %d verdict rows cannot be judged from logits (%s)", len(invalid), len(rows), reasons)

    @property
    def last(self) -> VerdictReport | None:
        """The most recent evaluation, if any."""
        return self.reports[-1] if self.reports else None

    def judge(self, model: Any, step: int, device: Any = None) -> VerdictReport:
        """Judge the subset with ``model`` now and return the report (does not log)."""
        was_training = model.training
        model.eval()
        try:
            p_positive = judge_probes(
                model, self.probes, batch_size=self.batch_size, pad_id=self.pad_id, device=device
            )
        finally:
            if was_training:
                model.train()
        labels = [p.label for p in self.probes]
        metrics = compute_verdict_metrics(labels, p_positive)
        categories = sorted({p.category for p in self.probes})
        if len(categories) > 1:
            for category in categories:
                chosen = [i for i, p in enumerate(self.probes) if p.category == category]
                sub = compute_verdict_metrics([labels[i] for i in chosen], [p_positive[i] for i in chosen])
                if "f1" in sub:
                    metrics[f"f1_{category}"] = sub["f1"]
        report = VerdictReport(step=step, metrics=metrics, p_positive=p_positive)
        self.reports.append(report)
        return report

    def threshold(self, metric: str = "mcc") -> tuple[float, float]:
        """The ``metric``-maximising P(positive) threshold on the last evaluation, and the F1 it gives."""
        if self.last is None:
            return 0.5, 0.0
        return best_threshold([p.label for p in self.probes], self.last.p_positive, metric)

    def thresholds_by_category(self, metric: str = "mcc") -> dict[str, float]:
        """Per category, the ``metric``-maximising threshold on that category's rows of the last evaluation."""
        if self.last is None:
            return {}
        out = {}
        for category in sorted({p.category for p in self.probes}):
            chosen = [i for i, p in enumerate(self.probes) if p.category == category]
            labels = [self.probes[i].label for i in chosen]
            out[category] = best_threshold(labels, [self.last.p_positive[i] for i in chosen], metric)[0]
        return out

    def write_verdicts(self, path: str | Path) -> Path:
        """Write the last evaluation's per-row P(positive) as JSON Lines (id, category, label, p_positive, reason)."""
        path = Path(path)
        report = self.last
        with open(path, "w", encoding="utf-8") as handle:
            for probe, p in zip(self.probes, report.p_positive if report else []):
                row = {"id": probe.id, "category": probe.category, "label": probe.label, "p_positive": p}
                handle.write(json.dumps(row | {"reason": probe.reason}) + "\n")
        return path

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        """Judge the subset, add ``eval_*`` verdict metrics to ``metrics`` and log them."""
        if model is None or not self.probes:
            return
        was_training = model.training
        model.eval()
        try:
            report = self.judge(model, state.global_step, device=args.device)
            logs = {f"eval_{name}": value for name, value in report.metrics.items()}
            if metrics is not None:
                metrics.update(logs)
            if self.trainer is not None:
                # Logged while the model is in eval mode, so TRL files them as evaluation metrics.
                self.trainer.log(dict(logs))
            else:
                logger.info("step %d verdict metrics: %s", state.global_step, logs)
        finally:
            if was_training:
                model.train()
        if state.is_world_process_zero and "wandb" in (args.report_to or []):
            self._log_table(report)

    def _log_table(self, report: VerdictReport) -> None:
        import wandb

        if wandb.run is None or self.table_rows == 0:
            return
        table = wandb.Table(columns=["id", "category", "label", "verdict", "p_positive", "correct"])
        for probe, p in list(zip(self.probes, report.p_positive))[: self.table_rows]:
            if p is None:
                table.add_data(probe.id, probe.category, probe.label, f"invalid: {probe.reason}", None, None)
                continue
            predicted = int(p >= 0.5)
            verdict = probe.words[0] if predicted else probe.words[1]
            table.add_data(probe.id, probe.category, probe.label, verdict, round(p, 4), predicted == probe.label)
        wandb.run.log({f"eval/verdicts_step_{report.step}": table, "train/global_step": report.step})


class TrainingDiverged(RuntimeError):
    """The training loss or gradient norm became NaN or infinite."""


class DivergenceCallback(TrainerCallback):
    """Raise :class:`TrainingDiverged` at the first logged non-finite ``loss`` or ``grad_norm``."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Check what the trainer is about to log."""
        for key in ("loss", "grad_norm"):
            value = (logs or {}).get(key)
            if isinstance(value, int | float) and not math.isfinite(value):
                raise TrainingDiverged(
                    f"{args.output_dir}: training diverged by step {state.global_step}: {key} is {value}. "
                    f"Lower learning_rate, clip gradients (max_grad_norm, now {args.max_grad_norm}), or "
                    f"train in float32 (--bf16 false, now {args.bf16}); checkpoints before this step are kept."
                )
