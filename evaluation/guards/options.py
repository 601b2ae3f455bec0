"""The guard backend's kinds and typed options; light, so the recipe checks need no torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from evaluation.backends.options import LocalModelOptions


__all__ = ["GUARD_KINDS", "GuardOptions", "guess_kind"]

GUARD_KINDS = ("llama_guard", "shieldgemma")


def guess_kind(model: str) -> str:
    """``llama_guard`` or ``shieldgemma`` from a model name.

    Raises:
        ValueError: when the name says neither.
    """
    lowered = model.lower().replace("-", "").replace("_", "")
    if "llamaguard" in lowered:
        return "llama_guard"
    if "shieldgemma" in lowered:
        return "shieldgemma"
    raise ValueError(f"<judge spec>: field 'options.kind': expected one of {GUARD_KINDS} for {model!r}, got nothing")


@dataclass(frozen=True)
class GuardOptions(LocalModelOptions):
    """The ``guard`` backend (see :mod:`evaluation.guards.judge`)."""

    kind: str | None = field(
        default=None,
        metadata={
            "help": "llama_guard | shieldgemma (default: from the model name)",
            "choices": (None, *GUARD_KINDS),
        },  # fmt: skip
    )
    read: str = field(
        default="logits", metadata={"help": "P(unsafe) from logits, or generate", "choices": ("logits", "generate")}
    )
    threshold: float = field(default=0.5, metadata={"help": "label = P(positive) >= threshold"})
    codes: str = field(
        default="category",
        metadata={
            "help": "category: only the category's codes; strict: all, counted if one is the category's",
            "choices": ("category", "strict"),
        },  # fmt: skip
    )
    answer_prefix: str | None = field(
        default=None, metadata={"help": "text between the prompt and the verdict word (default: the guard's own)"}
    )
