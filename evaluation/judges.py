"""Judges: the factory that builds them, and the shared type names (defined in :mod:`evaluation.types`).

A judge is a backend plus a prompt template. :func:`build_judge` asks the registry
(:mod:`evaluation.registry`) which backend builds a spec, so a new backend never edits this file.
"""

from __future__ import annotations

from collections.abc import Sequence

from evaluation import registry
from evaluation.types import Judge, JudgeResult, JudgeSpec, Status, short_model_name


__all__ = ["BACKENDS", "Judge", "JudgeResult", "JudgeSpec", "Status", "build_judge", "short_model_name"]

BACKENDS = registry.backend_names()  # the built-in backends; plugins add theirs to the registry


def build_judge(spec: JudgeSpec, *, train_examples: Sequence[dict] | None = None) -> Judge:
    """Build the judge a spec names; backends are imported only when asked for.

    Args:
        spec: the judge to build.
        train_examples: train-split examples (reference judges fit on them).

    Raises:
        ValueError: for an unknown backend, option, model or prompt (before any work starts).
        ImportError: when an optional extra (vLLM) is missing, with the pip line.
    """
    return registry.build(spec, train_examples)
