"""The typed options of the built-in backends, and the one function that reads a spec's ``options`` into them.

A run recipe (and ``JudgeSpec.options``) keeps options as a plain mapping, which is what ``run.json``
stores. Each backend reads them through its frozen dataclass here, so a misspelt key
(``prefx_cache``) is refused with the known keys instead of being silently ignored, and a value of
the wrong shape is refused before any model loads. This module imports nothing heavy: the registry
and the recipe checks read it without loading torch.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import NoneType, UnionType
from typing import Any, TypeVar

from recipes.prompts import RENDER_HELP, RENDERS, BudgetError, FieldBudget, parse_budget
from recipes.schema import DataError


__all__ = [
    "REFERENCE_MODELS",
    "CommonOptions",
    "FakeOptions",
    "HFOptions",
    "LocalModelOptions",
    "OpenAIOptions",
    "OptionsError",
    "PromptOptions",
    "ReferenceOptions",
    "VLLMOptions",
    "options_from",
]

REFERENCE_MODELS = ("tfidf", "refusal_phrases")
DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")

OptionsT = TypeVar("OptionsT", bound="CommonOptions")


class OptionsError(DataError):
    """A backend option that is unknown or malformed: ``<where>.options.<key>: <problem>``."""

    def __init__(self, where: str, key: str, problem: str, expected: str, got: Any):
        file, _, path = where.rpartition(": ") if ": " in where else (where, "", "")
        key_path = ".".join(p for p in (path, "options", key) if p)
        ValueError.__init__(self, f"{where}.{'.'.join(p for p in ('options', key) if p)}: {problem}")
        self.file, self.row, self.field, self.expected, self.got = file, None, key_path, expected, got


@dataclass(frozen=True)
class CommonOptions:
    """What every backend accepts."""

    seed: int = field(default=0, metadata={"help": "base seed; repeat r samples with seed + r (set by the run)"})
    deterministic: bool | None = field(
        default=None, metadata={"help": "override: every repeat gives the same result (computed once)"}
    )


@dataclass(frozen=True)
class PromptOptions(CommonOptions):
    """What every prompted backend accepts: the per-field character budget of the judge prompt."""

    budget: FieldBudget | None = field(
        default=None, metadata={"help": "characters kept per judged field (FieldBudget keys); default: FieldBudget()"}
    )
    render: str = field(
        default="plain",
        metadata={
            "help": RENDER_HELP,
            "choices": RENDERS,
        },
    )


@dataclass(frozen=True)
class LocalModelOptions(PromptOptions):
    """A model loaded here with transformers (the ``hf`` backend and the guards)."""

    dtype: str = field(default="auto", metadata={"help": "auto | float32 | bfloat16 | float16", "choices": DTYPES})
    device: str = field(
        default="auto",
        metadata={"help": "auto (cuda when available), a torch device, or map: spread over every visible GPU"},
    )
    float32_head: bool = field(
        default=True, metadata={"help": "a 16-bit model projects onto the vocabulary in float32"}
    )
    prefix_cache: bool = field(default=True, metadata={"help": "compute the shared system prefix once"})
    max_batch_tokens: int | None = field(
        default=None,
        metadata={"help": "rows x positions per batch, the memory bound (default: 8192 on a CPU, 16384 on a GPU)"},
    )


@dataclass(frozen=True)
class HFOptions(LocalModelOptions):
    """The ``hf`` backend (see :mod:`evaluation.backends.hf`)."""

    read: str = field(
        default="auto",
        metadata={"help": "read the verdict from logits or generate it", "choices": ("auto", "logits", "generate")},
    )
    force_prefix: bool = field(default=True, metadata={"help": "generation also starts after the answer prefix"})


@dataclass(frozen=True)
class VLLMOptions(PromptOptions):
    """The ``vllm`` backend (see :mod:`evaluation.backends.vllm`)."""

    dtype: str = field(default="auto", metadata={"help": "vLLM dtype"})
    gpu_memory_utilization: float = field(default=0.85, metadata={"help": "share of GPU memory vLLM may take"})
    max_model_len: int = field(default=8192, metadata={"help": "longest prompt + answer in tokens"})
    tensor_parallel_size: int = field(default=1, metadata={"help": "GPUs one model is split over"})
    logprobs: int = field(default=20, metadata={"help": "alternatives asked for when reading a verdict"})


@dataclass(frozen=True)
class OpenAIOptions(PromptOptions):
    """The ``openai`` backend (see :mod:`evaluation.backends.openai_compat`)."""

    base_url: str = field(default="https://api.openai.com/v1", metadata={"help": "chat-completions server"})
    model: str | None = field(default=None, metadata={"help": "model name sent (default: the spec's model)"})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "environment variable holding the key"})
    concurrency: int | None = field(default=None, metadata={"help": "requests in flight (default: batch_size)"})
    timeout_s: float = field(default=60.0, metadata={"help": "seconds per request"})
    max_retries: int = field(default=5, metadata={"help": "retries of 429 / 5xx / timeouts"})
    backoff_s: float = field(default=1.0, metadata={"help": "first backoff; doubles per retry, plus jitter"})
    max_backoff_s: float = field(default=60.0, metadata={"help": "longest wait between retries"})
    response_format: str = field(
        default="json_schema",
        metadata={"help": "structured output asked for", "choices": ("json_schema", "json_object", "none")},
    )
    logprobs: bool = field(default=True, metadata={"help": "ask for logprobs (P(positive))"})
    top_logprobs: int = field(default=5, metadata={"help": "alternatives per token"})
    extra_body: dict[str, Any] = field(default_factory=dict, metadata={"help": "merged into every request body"})


@dataclass(frozen=True)
class FakeOptions(PromptOptions):
    """The scripted ``fake`` backend (see :mod:`evaluation.backends.fake`)."""

    outputs: Any = field(default=None, metadata={"help": "a list of answers (cycled) or {example id: answer}"})
    default: str = field(default="oracle", metadata={"help": "oracle | invalid | any answer text"})
    flip: list[str] = field(default_factory=list, metadata={"help": "example ids whose oracle verdict is flipped"})


@dataclass(frozen=True)
class ReferenceOptions(CommonOptions):
    """The reference judges (see :mod:`evaluation.reference`)."""

    threshold: float = field(default=0.5, metadata={"help": "tfidf: label = P(positive) >= threshold"})


_SCALARS = {int: "an integer", float: "a number", str: "a string"}


def known_keys(cls: type) -> list[str]:
    """The option keys a dataclass accepts, in declaration order."""
    return [f.name for f in dataclasses.fields(cls)]


def _budget(value: Any, where: str) -> FieldBudget | None:
    if value is None or isinstance(value, FieldBudget):
        return value
    try:
        return parse_budget(value)
    except BudgetError as error:
        raise OptionsError(where, error.field, error.problem, error.expected, error.got) from None


def _coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    """``value`` as the field's type, converted the way the backends always read it (``int(...)`` ...)."""
    args = typing.get_args(hint)
    if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union:
        if value is None and NoneType in args:
            return None
        hint = next(a for a in args if a is not NoneType)
    if hint is FieldBudget:
        return _budget(value, where)
    origin = typing.get_origin(hint) or hint
    problem = None
    if hint is Any:
        return value
    if origin is bool:
        if isinstance(value, bool | int):
            return bool(value)
        problem = "true or false"
    elif origin in _SCALARS:
        problem = _SCALARS[origin]
        if origin is str or not isinstance(value, bool):
            try:
                return origin(value)
            except (TypeError, ValueError):
                pass
    elif origin is dict:
        if value is None or isinstance(value, Mapping):
            return dict(value or {})
        problem = "a mapping"
    elif origin is list:
        if isinstance(value, list | tuple):
            return list(value)
        problem = "a list"
    else:
        problem = f"a {getattr(origin, '__name__', origin)}"
    raise OptionsError(where, key, f"expected {problem}, got {value!r}", problem, value)


def options_from(cls: type[OptionsT], options: Mapping[str, Any] | CommonOptions | None, where: str) -> OptionsT:
    """Read a spec's ``options`` mapping into ``cls``, refusing unknown keys and malformed values.

    Args:
        cls: the backend's options dataclass.
        options: the mapping (an instance of ``cls`` is returned as it is).
        where: what the error names, e.g. ``recipes/runs/x.yaml: judges[2]`` or ``<judge spec>``.

    Raises:
        OptionsError: ``<where>.options.<key>: unknown key; known: a, b, c`` (or the expected value).
    """
    if isinstance(options, cls):
        return options
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise OptionsError(where, "", f"expected a mapping, got {options!r}", "a mapping", options)
    known = known_keys(cls)
    for key in options:
        if key not in known:
            raise OptionsError(
                where, str(key), f"unknown key; known: {', '.join(known)}", f"a known key ({', '.join(known)})", key
            )
    hints = typing.get_type_hints(cls)
    values = {}
    for item in dataclasses.fields(cls):
        if item.name not in options:
            continue
        value = _coerce(options[item.name], hints[item.name], item.name, where)
        choices = item.metadata.get("choices")
        if choices and value not in choices:
            shown = ", ".join(map(str, choices))
            raise OptionsError(where, item.name, f"expected one of {shown}, got {value!r}", f"one of {shown}", value)
        values[item.name] = value
    return cls(**values)
