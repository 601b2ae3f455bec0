"""The types every evaluation part shares: a judge's spec, its result per example, and the Judge protocol.

Everything downstream (the run matrix, the store, the metrics) sees only :class:`JudgeResult` rows
and the :class:`Judge` protocol; backends import their types from here and nothing above it, so a
new backend is a module plus one :func:`evaluation.registry.register_backend` call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from evaluation import registry
from recipes.judge_card import JUDGE_CARD


if TYPE_CHECKING:
    from recipes.categories import Category


__all__ = ["Judge", "JudgeResult", "JudgeSpec", "Status", "short_model_name"]

Status = Literal["ok", "invalid", "refusal", "error"]


@dataclass
class JudgeResult:
    """One judgment of one example.

    ``label`` is set exactly when ``status == "ok"``: an invalid output, a refusal or a backend error
    never carries a label, so nothing downstream can score a guess.
    """

    example_id: str
    label: int | None
    status: Status
    p_positive: float | None = None
    raw: str = ""
    explanation: str = ""
    score: int | None = None
    error: str = ""
    tokens: int = 0
    review: dict | None = None


@dataclass
class JudgeSpec:
    """One judge to build: model + prompt + backend options (what a run recipe lists).

    Attributes:
        model: hub id, local folder, alias (``smollm2-135m``), tuned-judge folder (holds ``judge.json``),
            a guard model id, or for reference judges ``tfidf`` / ``refusal_phrases``.
        prompt: ``basic``, ``criteria``, ``cot``, ``few_shot`` or ``score`` (ignored by guards,
            reference judges and tuned judges, whose card names the prompt they were trained with).
        backend: a registered backend (:func:`evaluation.registry.backend_names`).
        name: display name; defaults to ``<model short name>/<prompt>``.
        temperature: 0 means greedy decoding (repeats are then identical on deterministic backends).
        max_new_tokens: generation budget when the verdict cannot be read from logits.
        batch_size: examples per forward pass / concurrent requests.
        options: backend-specific settings, read into the backend's typed options dataclass
            (:func:`evaluation.registry.parse_options`); kept as a mapping, as ``run.json`` stores it.
    """

    model: str
    prompt: str = field(default="basic", metadata={"help": "judge prompt template"})
    backend: str = field(default=registry.DEFAULT_BACKEND, metadata={"help": "a registered backend"})
    name: str = field(default="", metadata={"help": "display name (default: model/prompt)"})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy"})
    max_new_tokens: int = field(default=128, metadata={"help": "generation budget"})
    batch_size: int = field(default=8, metadata={"help": "examples per batch / concurrent requests"})
    options: dict = field(default_factory=dict, metadata={"help": "backend-specific options"})

    def __post_init__(self) -> None:
        if self.backend not in registry.backend_names():
            raise ValueError(
                f"<judge spec>: field 'backend': expected one of {registry.backend_names()}, got {self.backend!r}"
            )
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(f"<judge spec>: field 'model': expected a model name, got {self.model!r}")
        if self.batch_size < 1:
            raise ValueError(f"<judge spec>: field 'batch_size': expected >= 1, got {self.batch_size!r}")
        if not self.name:
            self.name = _default_name(self)


def short_model_name(model: str) -> str:
    """``meta-llama/Llama-Guard-3-1B`` -> ``Llama-Guard-3-1B``; a folder -> its last part."""
    return Path(model.rstrip("/")).name or model


def _default_name(spec: JudgeSpec) -> str:
    short = short_model_name(spec.model)
    if not registry.backend(spec.backend).uses_prompt:
        return short
    if (Path(spec.model) / JUDGE_CARD).is_file():
        return f"{short}/tuned"
    return f"{short}/{spec.prompt}"


@runtime_checkable
class Judge(Protocol):
    """What the run matrix calls: one result per example, in order, never an exception per item."""

    name: str

    def judge(
        self,
        examples: list[dict],
        category: Category,
        *,
        repeat: int = 0,
        exemplars: list[dict] | None = None,
    ) -> list[JudgeResult]:
        """Judge ``examples`` of one category; repeat ``r`` uses seed ``base seed + r``."""
        ...
