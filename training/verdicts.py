"""Judging validation rows from logits while training: one batched forward pass, no decoding.

A verdict-first answer starts with ``{"verdict": "``, so the judge's decision is its next token.
Each validation prompt is rendered exactly as training saw it, the prefix is appended, and the
logits of the first token of the two verdict words are compared (:mod:`recipes.choices`, shared
with the evaluation layer so both read verdicts the same way). A row whose verdict words share a
first token, or whose prompt does not fit ``max_length``, cannot be judged this way: it is counted
as invalid and never scored.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, matthews_corrcoef, precision_recall_fscore_support, roc_auc_score

from recipes.chat import render_chat
from recipes.choices import ChoiceError, choice_token_ids
from recipes.verdict import VERDICT_PREFIX
from training.lm_head import supports_answer_only_head


__all__ = ["VerdictProbe", "best_threshold", "compute_verdict_metrics", "judge_probes", "prepare_probes"]

logger = logging.getLogger(__name__)


@dataclass
class VerdictProbe:
    """One validation row, ready to be judged from logits.

    Attributes:
        id: the example id.
        category: its category.
        label: the human label (1 = the finding is present).
        words: ``(positive, negative)`` verdict words.
        input_ids: the rendered prompt plus the verdict prefix; empty when ``reason`` is set.
        choice_ids: first-token ids of ``words``; empty when ``reason`` is set.
        reason: why the row cannot be judged from logits (``choice_collision`` or ``truncated``).
    """

    id: str
    category: str
    label: int
    words: tuple[str, str]
    input_ids: list[int]
    choice_ids: list[int]
    reason: str | None = None


def prepare_probes(
    tokenizer: Any,
    rows: Sequence[Mapping[str, Any]],
    verdict_words: Mapping[str, Sequence[str]],
    max_length: int | None,
) -> list[VerdictProbe]:
    """Tokenize each row's prompt (its messages without the answer) plus :data:`VERDICT_PREFIX`."""
    choices: dict[str, list[int] | None] = {}
    probes = []
    for row in rows:
        category = row["category"]
        words = tuple(verdict_words[category])
        if category not in choices:
            try:
                choices[category] = choice_token_ids(tokenizer, VERDICT_PREFIX, words)
            except ChoiceError:
                choices[category] = None
        base = {"id": row["id"], "category": category, "label": int(row["label"]), "words": words}
        if choices[category] is None:
            probes.append(VerdictProbe(**base, input_ids=[], choice_ids=[], reason="choice_collision"))
            continue
        prompt = [m for m in row["messages"] if m["role"] != "assistant"]
        text = render_chat(tokenizer, prompt, VERDICT_PREFIX)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if max_length is not None and len(ids) > max_length:
            probes.append(VerdictProbe(**base, input_ids=[], choice_ids=[], reason="truncated"))
            continue
        probes.append(VerdictProbe(**base, input_ids=ids, choice_ids=list(choices[category])))
    return probes


@contextmanager
def _head_input(model: Any) -> Iterator[tuple[list[torch.Tensor], Any]]:
    """Collects the LM head's input during a forward pass, where the head is a plain projection."""
    seen: list[torch.Tensor] = []
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    if not supports_answer_only_head(base) or not isinstance(head, torch.nn.Linear):
        yield seen, head
        return
    handle = head.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    try:
        yield seen, head
    finally:
        handle.remove()


@torch.no_grad()
def judge_probes(
    model: Any, probes: Sequence[VerdictProbe], *, batch_size: int, pad_id: int, device: Any = None
) -> list[float | None]:
    """P(positive) for each probe (None for invalid ones), from batched forward passes.

    Rows are batched by length and left-padded, so each row's last token is the last position and
    the model projects only that position through its LM head (``logits_to_keep=1``).
    """
    device = device or next(model.parameters()).device
    order = sorted((i for i, p in enumerate(probes) if p.reason is None), key=lambda i: -len(probes[i].input_ids))
    result: list[float | None] = [None] * len(probes)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(probes[i].input_ids) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            tokens = probes[i].input_ids
            ids[row, width - len(tokens) :] = torch.tensor(tokens)
            mask[row, width - len(tokens) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with _head_input(model) as (seen, head):
            logits = model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                logits_to_keep=1,
                use_cache=False,
            ).logits[:, -1, :]
        choice = torch.tensor([probes[i].choice_ids for i in batch], device=logits.device)
        if seen:
            # The two verdict logits in float32: under bf16 autocast a logit of ~20 is rounded to
            # 1/8, which leaves P(positive) a few dozen distinct values to choose a threshold from.
            hidden = seen[-1][:, -1, :].float()
            with torch.autocast(device_type=hidden.device.type, enabled=False):
                weight = head.weight.float()[choice]  # (rows, 2, hidden)
                pair = torch.einsum("rh,rch->rc", hidden, weight)
                if getattr(head, "bias", None) is not None:
                    pair = pair + head.bias.float()[choice]
        else:
            pair = logits.float().gather(-1, choice)
        p_positive = torch.softmax(pair, dim=-1)[:, 0].tolist()
        for i, p in zip(batch, p_positive):
            result[i] = p if math.isfinite(p) else None
    broken = sum(1 for i in order if result[i] is None)
    if broken:
        logger.warning("%d of %d verdicts are not finite (NaN logits): counted invalid", broken, len(order))
    return result


def compute_verdict_metrics(
    labels: Sequence[int], p_positive: Sequence[float | None], threshold: float = 0.5
) -> dict[str, float]:
    """F1, precision and recall of the positive class, accuracy, AUROC and the invalid rate.

    Invalid rows (``None``) count in ``invalid_rate`` only; the other metrics are over valid rows
    (an unjudged row is not a wrong verdict). ``auroc`` is left out when one class is absent.
    """
    total = len(labels)
    valid = [(y, p) for y, p in zip(labels, p_positive) if p is not None]
    metrics = {"invalid_rate": (total - len(valid)) / total if total else 0.0, "judged": float(len(valid))}
    if not valid:
        return metrics
    y_true = np.array([y for y, _ in valid])
    scores = np.array([p for _, p in valid])
    y_pred = (scores >= threshold).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, average="binary", pos_label=1, zero_division=0
    )
    metrics |= {
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "positive_rate": float(y_pred.mean()),
    }
    if len(set(y_true.tolist())) == 2:
        metrics["auroc"] = float(roc_auc_score(y_true, scores))
    return metrics


def best_threshold(
    labels: Sequence[int], p_positive: Sequence[float | None], metric: str = "mcc"
) -> tuple[float, float]:
    """The P(positive) threshold with the highest ``metric`` (``mcc`` or ``f1``) on these rows, and its F1.

    MCC is the default: on a few dozen rows the F1-best threshold is often the degenerate "call
    almost everything positive" (F1 = 2p/(1+p) at prevalence p), which MCC scores zero. F1 is for
    a validation split large enough to trust, when F1 is what the judge is ranked by. Ties go to
    the threshold closest to 0.5, so a flat curve keeps the neutral choice.
    """
    if metric not in ("mcc", "f1"):
        raise ValueError(f"<config>: field 'threshold_metric': expected mcc or f1, got {metric!r}")
    valid = [(y, p) for y, p in zip(labels, p_positive) if p is not None]
    if not valid or len({y for y, _ in valid}) < 2:
        return 0.5, compute_verdict_metrics(labels, p_positive).get("f1", 0.0)
    y_true = np.array([y for y, _ in valid])
    scores = np.array([p for _, p in valid])

    def score(threshold: float) -> float:
        predicted = (scores >= threshold).astype(int)
        if metric == "mcc":
            return float(matthews_corrcoef(y_true, predicted))
        return float(precision_recall_fscore_support(y_true, predicted, average="binary", zero_division=0)[2])

    best, best_score = 0.5, score(0.5)
    for candidate in sorted(set(scores.tolist())):
        value = score(candidate)
        if value > best_score + 1e-12 or (abs(value - best_score) <= 1e-12 and abs(candidate - 0.5) < abs(best - 0.5)):
            best, best_score = float(candidate), value
    _, _, f1, _ = precision_recall_fscore_support(
        y_true, (scores >= best).astype(int), average="binary", zero_division=0
    )
    return best, float(f1)
