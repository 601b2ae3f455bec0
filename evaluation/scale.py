"""Scale-down: one value for ``--limit``, ``--models`` and ``--max-new-tokens``, applied once at the edge.

A recipe written for a GPU node (hosted judges, 7B models, long ``cot`` budgets) can be tried on a
laptop by scaling it down. The command line builds one :class:`ScaleDown` and applies it to the
run recipe before :func:`evaluation.runs.run_eval` sees it, so the run itself only ever gets a
ready recipe; the job pipeline also asks it for the tuned judges' base model and training rows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from evaluation import registry
from evaluation.judges import short_model_name
from evaluation.run_recipe import BEST, JudgeGroupConfig, RunRecipe, SecondLevelConfig
from recipes.schema import DataError


__all__ = ["ScaleDown", "scale_down"]


@dataclass(frozen=True)
class ScaleDown:
    """What the command line asks to shrink; the empty value changes nothing."""

    limit: int | None = field(default=None, metadata={"help": "at most this many examples per category"})
    models: tuple[str, ...] = field(default=(), metadata={"help": "replace every judge and tuned base model"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "cap every generation budget"})

    def __post_init__(self):
        object.__setattr__(self, "models", tuple(self.models or ()))
        for flag, value in (("--limit", self.limit), ("--max-new-tokens", self.max_new_tokens)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise DataError("<command line>", None, flag, "a positive integer", value)

    def __bool__(self) -> bool:
        return self.limit is not None or bool(self.models) or self.max_new_tokens is not None

    @property
    def model(self) -> str | None:
        """The model that stands in for every tuned judge's base model (the first of ``models``)."""
        return self.models[0] if self.models else None

    def train_rows(self, n_categories: int) -> int | None:
        """Training rows for a tuned judge: ``limit`` per category, or None (all)."""
        return self.limit * n_categories if self.limit else None

    def apply(self, recipe: RunRecipe) -> RunRecipe:
        """``recipe`` scaled down (see :func:`scale_down`); the same object when nothing is asked."""
        return scale_down(recipe, limit=self.limit, models=list(self.models), max_new_tokens=self.max_new_tokens)


def scale_down(
    recipe: RunRecipe,
    *,
    limit: int | None = None,
    models: list[str] | None = None,
    max_new_tokens: int | None = None,
) -> RunRecipe:
    """Apply ``--limit``, ``--models`` and ``--max-new-tokens`` to a run recipe.

    ``models`` turns the recipe into a local run: every prompted judge group judges with these
    models on the ``hf`` backend (its prompts and settings kept, backend options dropped since they
    belonged to the old backend), each reviewer becomes the first of them (and a review of a named
    judge is re-pointed at the same prompt of that model), and guard models are dropped (they are
    fixed models, not judge models one can swap). Tuned and reference judges stay.

    ``limit`` also shrinks the robustness suite (one variant of each attack, at most ``limit``
    examples per category).

    ``max_new_tokens`` caps the generation budget of every judge group and reviewer: a recipe
    written for large models lets ``cot`` reason for hundreds of tokens, which a small stand-in
    model on a CPU spends mostly on rambling.
    """
    changes: dict[str, Any] = {}
    if limit is not None:
        changes["limit"] = limit
        if recipe.robustness is not None:  # the suite shrinks with the run: one variant, at most `limit` examples
            suite = recipe.robustness
            changes["robustness"] = dataclasses.replace(suite, variants=1, limit=min(suite.limit or limit, limit))
    if models:
        prompts: list[str] = []
        for group in recipe.judges:
            prompts += [p for p in group.prompts if p not in prompts]
        base = recipe.judges[0] if recipe.judges else JudgeGroupConfig(models=list(models))
        changes["judges"] = [
            JudgeGroupConfig(
                models=list(models),
                prompts=prompts or ["basic"],
                backend=registry.DEFAULT_BACKEND,
                temperature=base.temperature,
                max_new_tokens=base.max_new_tokens,
                batch_size=base.batch_size,
            )
        ]
        reviews = []
        for review in recipe.second_level:
            judge = review.judge
            if judge != BEST:
                judge = f"{short_model_name(models[0])}/{judge.rsplit('/', 1)[-1]}"
            reviewer = dataclasses.replace(
                review.reviewer, model=models[0], backend=registry.DEFAULT_BACKEND, options={}
            )
            reviews.append(SecondLevelConfig(judge=judge, reviewer=reviewer))
        changes["second_level"] = reviews
        changes["guards"] = []
    if max_new_tokens is not None:
        if max_new_tokens < 1:
            raise DataError("<command line>", None, "--max-new-tokens", "a positive integer", max_new_tokens)
        judges = changes.get("judges", recipe.judges)
        changes["judges"] = [
            dataclasses.replace(g, max_new_tokens=min(g.max_new_tokens, max_new_tokens)) for g in judges
        ]
        reviews = changes.get("second_level", recipe.second_level)
        capped = [min(r.reviewer.max_new_tokens, max_new_tokens) for r in reviews]
        changes["second_level"] = [
            dataclasses.replace(r, reviewer=dataclasses.replace(r.reviewer, max_new_tokens=n))
            for r, n in zip(reviews, capped)
        ]
    return dataclasses.replace(recipe, **changes) if changes else recipe
