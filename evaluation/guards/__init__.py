"""Guard models (Llama Guard 3, ShieldGemma) as judges, each with its documented prompt format."""

from __future__ import annotations

from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from evaluation.guards.judge import GuardJudge
    from evaluation.judges import JudgeSpec


__all__ = ["build_guard_judge"]


def build_guard_judge(spec: JudgeSpec) -> GuardJudge:
    """Build a guard judge (imports torch and transformers only when called)."""
    from evaluation.guards.judge import GuardJudge

    return GuardJudge(spec)
