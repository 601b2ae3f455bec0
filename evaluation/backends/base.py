"""What every prompted judge shares: render the judge prompt, ask a backend, read the verdict.

A backend only has to turn rendered prompts into :class:`Completion` objects (answer text, or
probabilities over the answer choices when it can read them from logits). Rendering, the choice
between a logit read and generation, and the verdict contract (``recipes.verdict``) live here once,
so the ``hf``, ``openai``, ``vllm`` and ``fake`` judges cannot drift apart in how they read answers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from evaluation.backends.options import CommonOptions, PromptOptions, options_from
from evaluation.types import JudgeResult, JudgeSpec
from recipes.categories import Category
from recipes.prompts import FieldBudget, JudgeTemplate, RenderedPrompt, check_render, load_template, render_prompt
from recipes.verdict import parse_score, parse_verdict, render_target


__all__ = ["Completion", "PromptJudge", "read_choice_probs", "read_completion"]

logger = logging.getLogger(__name__)


@dataclass
class Completion:
    """A backend's answer to one rendered prompt.

    Attributes:
        text: the generated answer (for a logit read: empty; the reader renders the answer).
        tokens: tokens the model computed for this item (prompt suffix + generated tokens; the
            shared prefix is charged once, to the item that first needed it).
        error: a backend failure message; then nothing else is read.
        choice_probs: probabilities over ``RenderedPrompt.choices`` (normalised over the choices),
            when the backend read the answer's first token from logits or logprobs.
        p_positive: P(positive) read from logprobs alongside a generated answer (OpenAI), if any.
    """

    text: str = ""
    tokens: int = 0
    error: str = ""
    choice_probs: list[float] | None = None
    p_positive: float | None = None


def _clean(value: float) -> float:
    return float(min(max(value, 0.0), 1.0))


def read_choice_probs(
    prompt: RenderedPrompt, probs: Sequence[float], threshold: float | None = None
) -> tuple[int, float, str, int | None]:
    """Turn probabilities over the answer choices into (label, P(positive), answer text, score).

    For verdict words the choices are ``[positive, negative]``; the label is positive when
    P(positive) >= ``threshold`` (0.5, i.e. the arg-max, unless a tuned judge chose another). For the
    ``score`` template the choices are ``1..5``: the score is the arg-max (what greedy decoding
    would write), its label is ``score >= template.score_threshold``, and P(positive) is
    P(score >= threshold) -- unless a tuned ``threshold`` is given, which then decides on P.
    """
    template, category = prompt.template, prompt.category
    if template.answer == "score":
        best = max(range(len(probs)), key=lambda i: probs[i])
        score = best + 1
        p_positive = _clean(sum(probs[template.score_threshold - 1 :]))
        label = int(p_positive >= threshold) if threshold is not None else int(score >= template.score_threshold)
        return label, p_positive, json.dumps({"score": score}), score
    p_positive = _clean(probs[0])
    label = int(p_positive >= (0.5 if threshold is None else threshold))
    return label, p_positive, render_target(category.positive, category.negative, label), None


def read_completion(
    example_id: str, prompt: RenderedPrompt, completion: Completion, threshold: float | None = None
) -> JudgeResult:
    """Read one completion into a :class:`JudgeResult` (first-level templates only)."""
    if completion.error:
        return JudgeResult(example_id, None, "error", error=completion.error, tokens=completion.tokens)
    if completion.choice_probs is not None:
        label, p_positive, raw, score = read_choice_probs(prompt, completion.choice_probs, threshold)
        return JudgeResult(
            example_id, label, "ok", p_positive=p_positive, raw=raw, score=score, tokens=completion.tokens
        )
    template, category = prompt.template, prompt.category
    if template.answer == "score":
        verdict = parse_score(completion.text, template.score_threshold, verdict_first=template.verdict_first)
    else:
        verdict = parse_verdict(
            completion.text, category.positive, category.negative, verdict_first=template.verdict_first
        )
    status = "ok" if verdict.valid else verdict.reason
    p_positive = completion.p_positive if verdict.valid else None
    if verdict.valid and threshold is not None and p_positive is not None:
        label = int(p_positive >= threshold)
    else:
        label = verdict.label
    return JudgeResult(
        example_id,
        label,
        status,
        p_positive=p_positive,
        raw=completion.text,
        explanation=verdict.explanation,
        score=verdict.score,
        tokens=completion.tokens,
    )


class PromptJudge:
    """A judge made of a prompt template and a backend that completes rendered prompts.

    Subclasses implement :meth:`complete` and name their typed options in ``options_class``. A tuned
    judge passes the verdict words, template, budget, render and decision threshold its ``judge.json``
    recorded; otherwise ``options.render`` (``plain`` by default, or another of
    :data:`recipes.prompts.RENDERS`) chooses the render.
    """

    options_class: type[PromptOptions] = PromptOptions

    def __init__(
        self,
        spec: JudgeSpec,
        *,
        template: str | JudgeTemplate | None = None,
        verdict_words: dict[str, list[str]] | None = None,
        budget: FieldBudget | None = None,
        threshold: float | None = None,
        thresholds: dict[str, float] | None = None,
        options: CommonOptions | None = None,
        render: str | None = None,
    ):
        self.spec = spec
        self.name = spec.name
        self.options = options_from(self.options_class, options or spec.options, "<judge spec>")
        chosen = template if template is not None else spec.prompt
        self.template = chosen if isinstance(chosen, JudgeTemplate) else load_template(chosen)
        self.verdict_words = verdict_words or {}
        self.budget = budget or self.options.budget or FieldBudget()
        self.threshold = threshold
        self.text_render = check_render(render or self.options.render, "<judge spec>")
        self.thresholds = dict(thresholds or {})  # per category, over `threshold`
        self.seed = self.options.seed

    # -- what a backend implements ---------------------------------------------------------------

    def complete(self, prompts: list[RenderedPrompt], *, seed: int, ids: list[str] | None = None) -> list[Completion]:
        """Answer each prompt; one completion per prompt, in order; failures as ``error``.

        ``ids`` are the example ids (only scripted backends use them).
        """
        raise NotImplementedError

    # -- the Judge protocol ----------------------------------------------------------------------

    def category_for(self, category: Category) -> Category:
        """The category with the verdict words this judge was trained with, if they differ."""
        words = self.verdict_words.get(category.name)
        if words and tuple(words) != category.verdict_words:
            return dataclasses.replace(category, positive=words[0], negative=words[1])
        return category

    def render(self, examples: list[dict], category: Category, exemplars: list[dict] | None = None) -> list:
        """Render each example; an example that cannot be rendered becomes an error message."""
        rendered: list[RenderedPrompt | str] = []
        for example in examples:
            try:
                rendered.append(
                    render_prompt(
                        self.template,
                        category,
                        example,
                        exemplars=exemplars,
                        budget=self.budget,
                        render=self.text_render,
                    )
                )
            except (KeyError, TypeError, ValueError) as error:
                rendered.append(f"cannot render the judge prompt: {type(error).__name__}: {error}")
        return rendered

    def judge(
        self,
        examples: list[dict],
        category: Category,
        *,
        repeat: int = 0,
        exemplars: list[dict] | None = None,
    ) -> list[JudgeResult]:
        """Judge examples of one category; repeat ``r`` samples with seed ``seed + r``."""
        category = self.category_for(category)
        rendered = self.render(examples, category, exemplars)
        good = [i for i, r in enumerate(rendered) if not isinstance(r, str)]
        ids = [str(examples[i].get("id", i)) for i in good]
        completions = self.complete([rendered[i] for i in good], seed=self.seed + repeat, ids=ids) if good else []
        if len(completions) != len(good):
            raise RuntimeError(f"{self.name}: backend returned {len(completions)} answers for {len(good)} prompts")
        by_index = dict(zip(good, completions))
        results = []
        for i, example in enumerate(examples):
            ident = str(example.get("id", i))
            if i not in by_index:
                results.append(JudgeResult(ident, None, "error", error=rendered[i]))
            else:
                threshold = self.thresholds.get(category.name, self.threshold)
                results.append(read_completion(ident, rendered[i], by_index[i], threshold))
        return results
