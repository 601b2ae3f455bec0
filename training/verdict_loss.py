"""Loss on the verdict token alone, not on the whole answer.

A judge's answer is ``{"verdict": "WORD"}`` plus an end-of-turn token: about ten tokens, of which
one decides. The others are learnt within a few steps, and from then on the mean over the answer
divides the verdict's gradient by ten. Evaluation forces the answer prefix and reads the verdict
token's logits, so that token is what the judge must get right. With ``verdict_loss_only``, the
labels of every other position are masked in the collated batch, so TRL's own loss, accuracy and
entropy code sees only the verdict token; the answer-only head (:mod:`training.lm_head`) then
scores it among the verdict tokens only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from recipes.verdict import render_target


__all__ = ["VerdictOnlyCollator", "verdict_token_ids"]


def verdict_token_ids(tokenizer: Any, verdict_words: Mapping[str, Iterable[str]]) -> set[int]:
    """The token ids at which the two answers of each category first differ."""
    ids: set[int] = set()
    for category, words in verdict_words.items():
        positive, negative = list(words)
        yes = tokenizer(render_target(positive, negative, 1), add_special_tokens=False)["input_ids"]
        no = tokenizer(render_target(positive, negative, 0), add_special_tokens=False)["input_ids"]
        first = next((i for i, (a, b) in enumerate(zip(yes, no)) if a != b), None)
        if first is None:
            raise ValueError(f"category {category}: field 'verdict_words': two words that tokenize apart, got {words}")
        ids.update((yes[first], no[first]))
    return ids


class VerdictOnlyCollator:
    """Wraps TRL's collator; keeps the label of each row's first verdict token and masks the rest.

    Raises:
        ValueError: a row has no verdict token among its labelled positions (the answer is not
            the verdict JSON, or the tokenizer splits it differently in context).
    """

    def __init__(self, collator: Callable[[list], dict], verdict_ids: set[int], tokenizer: Any = None):
        self.collator = collator
        self.verdict_ids = torch.tensor(sorted(verdict_ids))
        self.tokenizer = tokenizer

    def __call__(self, examples: list) -> dict:
        """Collate with TRL, then mask every label but the verdict token's."""
        batch = self.collator(examples)
        labels = batch["labels"]
        is_verdict = (labels != -100) & torch.isin(labels, self.verdict_ids)
        found = is_verdict.any(dim=1)
        if not bool(found.all()):
            row = int((~found).nonzero()[0])
            answer = labels[row][labels[row] != -100].tolist()
            shown = self.tokenizer.decode(answer) if self.tokenizer is not None else answer
            raise ValueError(
                f"training batch row {row}: field 'labels': expected a verdict token among the answer tokens "
                f"(verdict_loss_only), got answer {shown!r}"
            )
        first = is_verdict.int().argmax(dim=1)
        keep = torch.zeros_like(is_verdict)
        keep[torch.arange(labels.shape[0]), first] = True
        batch["labels"] = labels.masked_fill(~keep, -100)
        return batch
