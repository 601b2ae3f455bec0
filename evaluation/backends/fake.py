"""A scripted judge for tests: real rendering and real verdict parsing, canned answers.

Spec options:
    outputs: a list (used in call order, cycling) or a mapping ``{example id: entry}``. An entry is
        answer text (parsed like any model's), or a mapping with ``text``, ``probs`` (probabilities
        over the answer choices, as a logit read gives), ``error`` and ``tokens``.
    default: what an example without a scripted entry gets: ``oracle`` (the right verdict, from the
        example's human label; the default), ``invalid`` (text with no verdict) or any answer text.
    flip: example ids whose oracle verdict is flipped (a judge that is wrong on purpose).

Every call is recorded in ``calls`` (category, ids, seed, prompts) so tests can check what was asked.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from evaluation.backends.base import Completion, PromptJudge
from evaluation.backends.options import FakeOptions
from evaluation.types import JudgeResult, JudgeSpec
from recipes.categories import Category
from recipes.prompts import RenderedPrompt
from recipes.verdict import render_review, render_target


__all__ = ["FakeJudge"]


class FakeJudge(PromptJudge):
    """Answers from a script (see the module docstring)."""

    options_class = FakeOptions

    def __init__(self, spec: JudgeSpec):
        super().__init__(spec)
        outputs = self.options.outputs
        self._by_id: dict[str, Any] = dict(outputs) if isinstance(outputs, dict) else {}
        self._sequence = itertools.cycle(outputs) if isinstance(outputs, list) and outputs else None
        self.default = self.options.default
        self.flip = {str(i) for i in self.options.flip}
        self.calls: list[dict[str, Any]] = []
        self._labels: dict[str, int] = {}

    def judge(
        self,
        examples: list[dict],
        category: Category,
        *,
        repeat: int = 0,
        exemplars: list[dict] | None = None,
    ) -> list[JudgeResult]:
        """Remember the human labels (for ``oracle``) and judge as any prompted judge."""
        self._labels.update({str(e.get("id", i)): int(e["label"]) for i, e in enumerate(examples) if "label" in e})
        return super().judge(examples, category, repeat=repeat, exemplars=exemplars)

    def _default_entry(self, ident: str, prompt: RenderedPrompt) -> Any:
        if self.default == "invalid":
            return "I think this is fine."
        if self.default != "oracle":
            return self.default
        label = self._labels.get(ident)
        if label is None:
            return "no label to copy"
        if ident in self.flip:
            label = 1 - label
        if prompt.template.answer == "review":
            return render_review(True)
        if prompt.template.answer == "score":
            return json.dumps({"score": 5 if label else 1})
        return render_target(prompt.category.positive, prompt.category.negative, label)

    def complete(self, prompts: list[RenderedPrompt], *, seed: int, ids: list[str] | None = None) -> list[Completion]:
        """Answer each prompt from the script."""
        ids = ids or [str(i) for i in range(len(prompts))]
        category = prompts[0].category.name if prompts else None
        self.calls.append({"category": category, "ids": list(ids), "seed": seed, "prompts": list(prompts)})
        completions = []
        for ident, prompt in zip(ids, prompts):
            if ident in self._by_id:
                entry = self._by_id[ident]
            elif self._sequence is not None:
                entry = next(self._sequence)
            else:
                entry = self._default_entry(ident, prompt)
            if isinstance(entry, dict):
                completions.append(
                    Completion(
                        text=str(entry.get("text", "")),
                        choice_probs=entry.get("probs"),
                        error=str(entry.get("error", "")),
                        tokens=int(entry.get("tokens", 0)),
                    )
                )
            else:
                completions.append(Completion(text=str(entry), tokens=len(str(entry).split())))
        return completions
