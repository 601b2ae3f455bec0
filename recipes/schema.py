"""The judgment example: one victim transcript with its human label.

Every source loader produces rows in this shape, every builder and evaluator consumes it. The
``datasets`` schema below is the contract; :func:`validate_example` enforces it with errors that
name the file, row and field, so bad input is caught at the edge and never deep inside training.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import datasets


__all__ = [
    "FEATURES",
    "DataError",
    "check_prompt",
    "example_id",
    "prompt_text",
    "validate_example",
    "to_arrow_row",
    "from_arrow_row",
]

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "category": datasets.Value("string"),
        # A string, or a list of chat messages stored as JSON text (Arrow has no union type) ...
        "prompt": datasets.Value("string"),
        # ... and which of the two it is ("text" or "messages"): never guessed from the content.
        "prompt_format": datasets.Value("string"),
        "response": datasets.Value("string"),
        "label": datasets.Value("int8"),
        "annotations": datasets.Sequence(datasets.Value("int8")),
        "group": datasets.Value("string"),
        # Optional JSON object: system prompt, secret, reference answer.
        "context": datasets.Value("string"),
        "source": datasets.Value("string"),
        # Free-form JSON object (agreement, original ids, ...).
        "meta": datasets.Value("string"),
    }
)


class DataError(ValueError):
    """Bad input, reported as ``<file>:<row>: field '<name>': expected <what>, got <value>``."""

    def __init__(self, file: str, row: int | str | None, field: str, expected: str, got: Any):
        shown = repr(got)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        location = f"{file}:{row}" if row is not None else str(file)
        super().__init__(f"{location}: field '{field}': expected {expected}, got {shown}")
        self.file, self.row, self.field, self.expected, self.got = file, row, field, expected, got


def example_id(category: str, prompt: str | list, response: str) -> str:
    """A stable id for sources that have none: the same content always gets the same id."""
    payload = json.dumps([category, prompt, response], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def prompt_text(prompt: str | list[Mapping[str, str]]) -> str:
    """The victim prompt as text: chat messages are joined as ``role: content`` lines."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def _check_messages(value: Any, file: str, row: int | str | None) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise DataError(file, row, "prompt", "a non-empty string or a non-empty list of chat messages", value)
    for message in value:
        if not (isinstance(message, Mapping) and isinstance(message.get("role"), str)):
            raise DataError(file, row, "prompt", "chat messages with 'role' and 'content'", message)
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            raise DataError(file, row, "prompt", "chat messages with non-empty 'content'", message)
    return [{"role": m["role"], "content": m["content"]} for m in value]


def check_prompt(value: Any, file: str, row: int | str | None) -> str | list[dict[str, str]]:
    """A victim prompt: a non-empty string or a non-empty list of chat messages (for builds and ``judge``).

    Raises:
        DataError: the prompt is empty or not that shape.
    """
    if isinstance(value, str):
        if not value.strip():
            raise DataError(file, row, "prompt", "a non-empty string or a non-empty list of chat messages", value)
        return value
    return _check_messages(value, file, row)


def validate_example(row: Mapping[str, Any], file: str = "<memory>", row_number: int | str | None = None) -> dict:
    """Check one example and return it normalised (id filled in, optional fields defaulted).

    Raises:
        DataError: naming the file, row and field that break the contract.
    """
    for name in ("category", "response"):
        value = row.get(name)
        if not isinstance(value, str) or not value.strip():
            raise DataError(file, row_number, name, "a non-empty string", value)
    prompt = check_prompt(row.get("prompt"), file, row_number)
    label = row.get("label")
    if isinstance(label, bool) or label not in (0, 1):
        raise DataError(file, row_number, "label", "0 or 1 (1 = the finding is present)", label)
    annotations = row.get("annotations") or []
    if not isinstance(annotations, list | tuple) or any(a not in (0, 1) for a in annotations):
        raise DataError(file, row_number, "annotations", "a list of 0/1 human labels", annotations)
    context = row.get("context")
    if context is not None and not isinstance(context, Mapping):
        raise DataError(file, row_number, "context", "a mapping (system prompt, secret, reference)", context)
    meta = row.get("meta")
    if meta is not None and not isinstance(meta, Mapping):
        raise DataError(file, row_number, "meta", "a mapping", meta)
    category, response = row["category"], row["response"]
    ident = row.get("id")
    ident = str(ident) if ident not in (None, "") else example_id(category, prompt, response)
    group = row.get("group")
    return {
        "id": ident,
        "category": category,
        "prompt": prompt,
        "response": response,
        "label": int(label),
        "annotations": [int(a) for a in annotations],
        "group": str(group) if group not in (None, "") else ident,
        "context": dict(context) if context else {},
        "source": str(row.get("source") or ""),
        "meta": dict(meta) if meta else {},
    }


def to_arrow_row(example: Mapping[str, Any]) -> dict:
    """Encode a validated example for :data:`FEATURES` (chat prompts, context and meta as JSON)."""
    prompt = example["prompt"]
    return {
        **example,
        "prompt": prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False),
        "prompt_format": "text" if isinstance(prompt, str) else "messages",
        "context": json.dumps(example.get("context") or {}, ensure_ascii=False),
        "meta": json.dumps(example.get("meta") or {}, ensure_ascii=False),
    }


def from_arrow_row(row: Mapping[str, Any]) -> dict:
    """Decode a row stored with :data:`FEATURES` back into the in-memory example.

    ``prompt_format`` says whether the prompt is text or chat messages; only data built before it
    existed (no such column) falls back to reading a ``[{"role"`` prefix as messages.
    """
    row = dict(row)
    prompt, kind = row["prompt"], row.pop("prompt_format", None)
    if kind == "messages" or (kind is None and prompt.startswith('[{"role"')):
        prompt = json.loads(prompt)
    return {
        **row,
        "prompt": prompt,
        "context": json.loads(row.get("context") or "{}"),
        "meta": json.loads(row.get("meta") or "{}"),
        "annotations": list(row.get("annotations") or []),
    }
