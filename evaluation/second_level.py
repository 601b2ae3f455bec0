"""The second-level judge: a reviewer confirms or corrects a first-level verdict.

The reviewer reads the first judge's prompt and answer and says ``correct``, or ``not_correct``
with the corrected verdict.

It wraps any first-level judge and any prompted reviewer (the same model or another). The final
label is the reviewed one; every result carries ``review`` details so flips can be counted:
``first_label``, ``first_status``, ``first_p_positive``, ``correct`` (None when the review could not be
read), ``flipped`` (the label changed), ``status`` (``ok``, ``invalid``, ``refusal``, ``error`` or
``skipped`` for a first-level error, which has nothing to review).

Rules, so that nothing is guessed: an unreadable review leaves the first verdict in place (and is
counted through ``review["status"]``); ``not_correct`` without a corrected verdict flips a binary
label; a reviewer that supplies a verdict for an invalid first answer gives it a label.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from evaluation.backends.base import Completion, PromptJudge
from evaluation.judges import Judge, JudgeResult, JudgeSpec, build_judge, short_model_name
from evaluation.metric_rows import compute_metric_rows
from evaluation.metrics import count_flips
from evaluation.records import JudgeName
from evaluation.robustness import is_attacked
from recipes.categories import Category
from recipes.prompts import RenderedPrompt, render_prompt, render_review_prompt
from recipes.verdict import Review, parse_review, render_review, render_target


__all__ = ["SecondLevelJudge", "best_prompted", "summarize_flips"]


def _review_from_completion(completion: Completion, category: Category, first_label: int | None) -> tuple[Review, str]:
    if completion.choice_probs is not None:
        p_correct = completion.choice_probs[0]
        correct = p_correct >= 0.5
        if correct:
            return Review(correct=True, label=first_label), render_review(True)
        if first_label is None:
            return Review(
                correct=False, reason="invalid", explanation="not_correct without a corrected verdict"
            ), render_review(False)
        label = 1 - first_label
        return Review(correct=False, label=label), render_review(False, category.word_for(label))
    return parse_review(completion.text, category.positive, category.negative, first_label), completion.text


class SecondLevelJudge:
    """A first-level judge reviewed by a second-level reviewer (see the module docstring)."""

    def __init__(self, first: Judge, reviewer_spec: JudgeSpec, *, reviewer: PromptJudge | None = None):
        self.first = first
        spec = dataclasses.replace(reviewer_spec, prompt="second_level")
        built = reviewer if reviewer is not None else build_judge(spec)
        if not isinstance(built, PromptJudge):
            raise ValueError(
                f"<judge spec>: field 'second_level.reviewer.backend': expected a prompted backend "
                f"(hf, openai, vllm, fake), got {reviewer_spec.backend!r}"
            )
        if built.template.answer != "review":
            raise ValueError(f"{built.name}: a reviewer needs the second_level template, got {built.template.name!r}")
        self.reviewer = built
        self.name = str(JudgeName.review(first.name, short_model_name(reviewer_spec.model)))

    def _first_prompts(self, examples: list[dict], category: Category, exemplars: list[dict] | None) -> list:
        if isinstance(self.first, PromptJudge):
            return self.first.render(examples, self.first.category_for(category), exemplars)
        # Guards and reference judges have no prompt of ours; show the reviewer the basic one.
        prompts: list[RenderedPrompt | str] = []
        for example in examples:
            try:
                prompts.append(render_prompt("basic", category, example))
            except (KeyError, TypeError, ValueError) as error:
                prompts.append(f"cannot render: {error}")
        return prompts

    def judge(
        self,
        examples: list[dict],
        category: Category,
        *,
        repeat: int = 0,
        exemplars: list[dict] | None = None,
        first_results: list[JudgeResult] | None = None,
    ) -> list[JudgeResult]:
        """Review each first-level result; pass ``first_results`` to avoid judging twice."""
        if first_results is None:
            first_results = self.first.judge(examples, category, repeat=repeat, exemplars=exemplars)
        if len(first_results) != len(examples):
            raise ValueError(f"{self.name}: {len(first_results)} first-level results for {len(examples)} examples")
        prompts = self._first_prompts(examples, category, exemplars)
        shown_category = prompts[0].category if prompts and isinstance(prompts[0], RenderedPrompt) else category
        todo, review_prompts = [], []
        for i, (first, prompt) in enumerate(zip(first_results, prompts)):
            if first.status == "error" or isinstance(prompt, str):
                continue
            answer = first.raw or (
                render_target(shown_category.positive, shown_category.negative, first.label)
                if first.label is not None
                else ""
            )
            review_prompts.append(render_review_prompt(prompt, answer, template=self.reviewer.template))
            todo.append(i)
        ids = [first_results[i].example_id for i in todo]
        completions = self.reviewer.complete(review_prompts, seed=self.reviewer.seed + repeat, ids=ids) if todo else []
        reviewed = dict(zip(todo, completions))
        return [self._combine(first, reviewed.get(i), shown_category) for i, first in enumerate(first_results)]

    def _combine(self, first: JudgeResult, completion: Completion | None, category: Category) -> JudgeResult:
        details = {
            "first_label": first.label,
            "first_status": first.status,
            "first_p_positive": first.p_positive,
            "correct": None,
            "flipped": False,
            "status": "skipped",
        }
        if completion is None:
            return dataclasses.replace(first, review=details)
        tokens = first.tokens + completion.tokens
        if completion.error:
            details["status"] = "error"
            return dataclasses.replace(first, tokens=tokens, review=details | {"error": completion.error})
        review, raw = _review_from_completion(completion, category, first.label)
        details["correct"] = review.correct
        if review.correct is None:
            details["status"] = review.reason or "invalid"
            return dataclasses.replace(first, tokens=tokens, review=details)
        details["status"] = "ok"
        label = review.label
        details["flipped"] = label is not None and first.label is not None and label != first.label
        if label is None:
            return dataclasses.replace(first, tokens=tokens, review=details)
        p_positive = first.p_positive if label == first.label else None
        explanation = review.explanation or first.explanation
        return JudgeResult(
            first.example_id,
            label,
            "ok",
            p_positive=p_positive,
            raw=raw,
            explanation=explanation,
            score=first.score if label == first.label else None,
            tokens=tokens,
            review=details,
        )


def summarize_flips(results: Sequence[JudgeResult], human_labels: Sequence[int]) -> dict[str, int]:
    """Count what the review did against the human labels.

    ``fixed``: a flip from a wrong first label to the right one; ``broken``: from right to wrong;
    ``rescued``: an invalid/refused first answer given a label by the reviewer (``rescued_right``
    of them correct); ``unreadable``: reviews that could not be read; ``skipped``: first-level errors.
    """
    counts = dict.fromkeys(("reviewed", "unreadable", "skipped"), 0)
    for result in results:
        status = (result.review or {}).get("status")
        counts["skipped" if status == "skipped" else "reviewed"] += 1
        counts["unreadable"] += int(status not in ("ok", "skipped"))
    flips = count_flips(
        list(human_labels),
        [(r.review or {}).get("first_label", r.label) for r in results],
        [(r.review or {}).get("first_status", r.status) for r in results],
        [r.label for r in results],
        [r.status for r in results],
    )
    order = ("reviewed", "flips", "fixed", "broken", "rescued", "rescued_right", "unreadable", "skipped")
    return {key: (counts | flips)[key] for key in order}


def best_prompted(records: list[dict[str, Any]], prompted: list[str]) -> str:
    """The prompted judge with the highest pooled headline F1 (ties: the earlier in the recipe)."""
    rows = compute_metric_rows([r for r in records if r["judge"] in prompted and not is_attacked(r)], n_boot=0)
    scores = {row["judge"]: row["f1"] for row in rows if row["category"] == "all"}

    def rank(name: str) -> tuple[float, int]:
        score = scores.get(name, math.nan)
        return (-score if not math.isnan(score) else 1.0), prompted.index(name)

    return min(prompted, key=rank)
