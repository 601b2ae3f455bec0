"""The plan of a run: every judge a recipe names (:class:`JudgeEntry`), every cell judge x category x repeat.

What a recipe names is checked here, all problems together and before any model loads: models,
prompts, backend options, tuned-judge folders, guard kinds, data paths, second-level targets.
Each judge kind and backend is asked of the registry (:mod:`evaluation.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evaluation import registry
from evaluation.guards.options import GUARD_KINDS
from evaluation.records import JudgeName
from evaluation.run_recipe import (
    BEST,
    GuardConfig,
    ReviewerConfig,
    RunProblems,
    RunRecipe,
    load_recipe_plugins,
)
from evaluation.types import JudgeSpec, short_model_name
from recipes.categories import list_categories
from recipes.judge_card import JUDGE_CARD, JudgeCard
from recipes.paths import resolve_path
from recipes.prompts import FIRST_LEVEL, load_template
from recipes.schema import DataError
from recipes.splits import SPLITS


__all__ = ["Cell", "JudgeEntry", "check_recipe", "expand_judges", "plan", "reviewer_name"]


@dataclass(frozen=True)
class JudgeEntry:
    """One judge of the run with what the report needs to place it."""

    spec: JudgeSpec
    kind: str  # a registered judge kind (evaluation.registry.judge_kinds)
    reviews: str = ""  # second level: the first-level judge it reviews (may be `best`)
    base_model: str = ""  # tuned: the model it was tuned from

    @property
    def name(self) -> str:
        """The judge's display name (its key in the store)."""
        return self.spec.name

    def deterministic(self) -> bool:
        """Whether every repeat gives the same result, so it is computed once and recorded per repeat.

        The backend's registration says (:func:`evaluation.registry.is_deterministic`): reference
        judges always, local backends at temperature 0, a hosted API never. ``options.deterministic``
        overrides.
        """
        return registry.is_deterministic(self.spec)


@dataclass(frozen=True)
class Cell:
    """One cell of the plan: a judge on one category for one repeat."""

    judge: str
    kind: str
    model: str
    prompt: str
    backend: str
    category: str
    repeat: int


# ----------------------------------------------------------------------------------------------
# Expanding (scale-down lives in evaluation/scale.py)
# ----------------------------------------------------------------------------------------------


def reviewer_name(first: str, reviewer: ReviewerConfig) -> str:
    """The second-level judge's name: ``<first judge>+review:<reviewer model>``."""
    return str(JudgeName.review(first, short_model_name(reviewer.model)))


def expand_judges(recipe: RunRecipe) -> list[JudgeEntry]:
    """Every judge of the run, in run order: reference, prompted, tuned, guards, then second level."""
    reference, tuned, guards = (registry.judge_kind(k) for k in (registry.REFERENCE, registry.TUNED, registry.GUARD))
    entries = [
        JudgeEntry(JudgeSpec(ref, prompt="-", backend=reference.backend, name=reference.name_for(ref)), reference.name)
        for ref in recipe.reference
    ]
    for group in recipe.judges:
        for model in group.models:
            for prompt in group.prompts:
                spec = JudgeSpec(
                    model=model,
                    prompt=prompt,
                    backend=group.backend,
                    temperature=float(group.temperature),
                    max_new_tokens=group.max_new_tokens,
                    batch_size=group.batch_size,
                    options=dict(group.options),
                )
                entries.append(JudgeEntry(spec, registry.PROMPTED))
    for folder in recipe.tuned:
        path = resolve_path(folder, recipe.path)
        card = JudgeCard.read(path) if (path / JUDGE_CARD).is_file() else None
        prompt = card.prompt_template if card else "basic"
        spec = JudgeSpec(model=str(path), prompt=prompt, backend=tuned.backend, name=tuned.name_for(folder))
        entries.append(JudgeEntry(spec, tuned.name, base_model=card.base_model if card else ""))
    for guard in recipe.guards:
        spec = JudgeSpec(
            model=guard.model,
            prompt=guard.kind,
            backend=guards.backend,
            batch_size=guard.batch_size,
            options=_guard_options(guard),
        )
        entries.append(JudgeEntry(spec, guards.name))
    for review in recipe.second_level:
        reviewer = review.reviewer
        spec = JudgeSpec(
            model=reviewer.model,
            prompt="second_level",
            backend=reviewer.backend,
            name=reviewer_name(review.judge, reviewer),
            temperature=float(reviewer.temperature),
            max_new_tokens=reviewer.max_new_tokens,
            batch_size=reviewer.batch_size,
            options=dict(reviewer.options),
        )
        entries.append(JudgeEntry(spec, registry.SECOND_LEVEL, reviews=review.judge))
    return entries


# ----------------------------------------------------------------------------------------------
# Checking names
# ----------------------------------------------------------------------------------------------


def _guard_options(guard: GuardConfig) -> dict[str, Any]:
    return {**guard.options, "kind": guard.kind}


def _check_judge(
    backend: str, models: dict[str, str], options: dict[str, Any], where: str, problems: RunProblems
) -> None:
    """A judge's backend, its model names (``{key path: model}``) and its options, as the registry checks them."""
    try:
        entry = registry.backend(backend, problems.file)
    except DataError:
        problems.add(f"{where}.backend", f"one of {registry.backend_names()}", backend)
        return
    for model_where, model in models.items():
        problem = entry.model_problem(model)
        if problem:
            problems.add(model_where, problem, model)
    try:
        registry.parse_options(backend, options, f"{problems.file}: {where}")
    except DataError as error:
        problems.items.append(error)


def check_recipe(recipe: RunRecipe, data_categories: list[str] | None = None) -> None:
    """Check every name the recipe uses; raise one :class:`RunRecipeError` listing all problems.

    Args:
        recipe: the parsed recipe.
        data_categories: categories present in the data, when already known.
    """
    problems = RunProblems(recipe.path)
    load_recipe_plugins(recipe.plugins, recipe.path, problems)
    known = list_categories(recipe.categories_dirs)
    for i, name in enumerate(recipe.categories or []):
        if name not in known:
            problems.add(f"categories[{i}]", f"one of: {', '.join(known)}", name)
        elif data_categories is not None and name not in data_categories:
            problems.add(f"categories[{i}]", f"a category present in the data ({', '.join(data_categories)})", name)
    data = recipe.data
    for key in ("recipe", "dir"):
        value = getattr(data, key)
        if value and not resolve_path(value, recipe.path).exists():
            problems.add(f"data.{key}", "an existing path", value)
    for split, file in (data.files or {}).items():
        if split not in SPLITS:
            problems.add(f"data.files.{split}", f"a split name, one of {SPLITS}", split)
        if not resolve_path(file, recipe.path).is_file():
            problems.add(f"data.files.{split}", "an existing JSON Lines file", file)
    if data.files is not None and recipe.split not in data.files:
        problems.add("data.files", f"a file for the evaluated split '{recipe.split}'", sorted(data.files))
    for i, group in enumerate(recipe.judges):
        if not group.models:
            problems.add(f"judges[{i}].models", "at least one model", group.models)
        models = {f"judges[{i}].models[{j}]": model for j, model in enumerate(group.models)}
        _check_judge(group.backend, models, group.options, f"judges[{i}]", problems)
        for j, prompt in enumerate(group.prompts):
            if prompt not in FIRST_LEVEL:
                try:
                    template = load_template(prompt)
                except DataError:
                    template = None
                if template is None or template.answer == "review":
                    problems.add(f"judges[{i}].prompts[{j}]", f"one of {FIRST_LEVEL} or a template file", prompt)
    for i, folder in enumerate(recipe.tuned):
        path = resolve_path(folder, recipe.path)
        try:
            card = JudgeCard.read(path)
        except DataError as error:
            problems.add(f"tuned[{i}]", f"a tuned-judge folder holding {JUDGE_CARD}", f"{folder} ({error})")
            continue
        if card.prompt_template not in FIRST_LEVEL:
            problems.add(f"tuned[{i}].prompt_template", f"one of {FIRST_LEVEL}", card.prompt_template)
    guards = registry.judge_kind(registry.GUARD)
    for i, guard in enumerate(recipe.guards):
        options = _guard_options(guard) if guard.kind in GUARD_KINDS else guard.options
        if guard.kind not in GUARD_KINDS:
            problems.add(f"guards[{i}].kind", f"one of {GUARD_KINDS}", guard.kind)
        _check_judge(guards.backend, {f"guards[{i}].model": guard.model}, options, f"guards[{i}]", problems)
    reference = registry.judge_kind(registry.REFERENCE)
    models = {f"reference[{i}]": ref for i, ref in enumerate(recipe.reference)}
    _check_judge(reference.backend, models, {}, "reference", problems)
    entries = expand_judges(recipe) if not problems.items else []
    names = [e.name for e in entries]
    first_level = [e.name for e in entries if e.kind == registry.PROMPTED]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.add("judges", "each judge once (model/prompt pairs must be unique)", name)
    for i, review in enumerate(recipe.second_level):
        if entries and review.judge != BEST and review.judge not in first_level:
            problems.add(
                f"second_level[{i}].judge", f"`best` or a prompted judge: {', '.join(first_level)}", review.judge
            )
        if review.judge == BEST and entries and not first_level:
            problems.add(f"second_level[{i}].judge", "prompted judges to choose the best from", review.judge)
        reviewer = review.reviewer
        models = {f"second_level[{i}].reviewer.model": reviewer.model}
        _check_judge(reviewer.backend, models, reviewer.options, f"second_level[{i}].reviewer", problems)
    problems.raise_if_any()


def _data_categories(recipe: RunRecipe) -> list[str]:
    """The categories a recipe's data holds, read from its data recipe or data card (no examples loaded)."""
    from recipes.builders import DataCard, load_data_recipe

    if recipe.data.recipe:
        return [c.name for c in load_data_recipe(resolve_path(recipe.data.recipe, recipe.path)).categories]
    if recipe.data.dir:
        return sorted(DataCard.read(resolve_path(recipe.data.dir, recipe.path)).counts)
    return []


def plan(
    recipe: RunRecipe, categories: list[str] | None = None, data_categories: list[str] | None = None
) -> list[Cell]:
    """Every cell of the run (judge x category x repeat), checking the recipe first (once).

    Args:
        recipe: the run recipe.
        categories: the categories to plan for (default: the recipe's, else those its data recipe or
            data card names; ``["*"]`` for data files, whose categories are known only once read).
        data_categories: categories present in the data, when already known (checked against the recipe's).
    """
    check_recipe(recipe, data_categories)
    cats = categories or recipe.categories or _data_categories(recipe) or ["*"]
    return [
        Cell(e.name, e.kind, e.spec.model, e.spec.prompt, e.spec.backend, category, repeat)
        for e in expand_judges(recipe)
        for category in cats
        for repeat in range(recipe.repeats)
    ]
