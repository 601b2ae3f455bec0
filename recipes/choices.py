"""Reading a verdict from logits: which token starts each answer choice.

A verdict-first answer begins with a fixed prefix (``{"verdict": "``), so the judge's decision is
the next token. Comparing the logits of the first token of each choice gives the verdict and
P(positive) in one forward pass, with no decoding. That only works when the choices start with
different tokens and the prefix does not merge with them; both are checked here, once per
tokenizer, instead of being assumed. Training (its verdict callback) and evaluation (the ``hf``
backend) share this so that they read verdicts identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


__all__ = ["ChoiceError", "choice_token_ids"]


class ChoiceError(ValueError):
    """The answer choices cannot be told apart by their first token."""


def choice_token_ids(tokenizer: Any, answer_prefix: str, choices: Sequence[str], probe: str = "x") -> list[int]:
    """The id of the first token of each choice when it follows ``answer_prefix``.

    Raises:
        ChoiceError: when two choices share their first token, or a choice's first token merges
            with the end of the prefix (then the verdict must be generated, not read from logits).
    """
    base = tokenizer(probe + answer_prefix, add_special_tokens=False)["input_ids"]
    ids = []
    for choice in choices:
        full = tokenizer(probe + answer_prefix + choice, add_special_tokens=False)["input_ids"]
        if full[: len(base)] != base or len(full) <= len(base):
            raise ChoiceError(f"choice {choice!r} merges with the answer prefix {answer_prefix!r} when tokenized")
        ids.append(full[len(base)])
    if len(set(ids)) != len(ids):
        shown = {c: tokenizer.convert_ids_to_tokens(i) for c, i in zip(choices, ids)}
        raise ChoiceError(f"choices share a first token {shown}; read the verdict by generation instead")
    return ids
