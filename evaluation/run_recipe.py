"""Run recipes: the YAML that names an evaluation, parsed into typed dataclasses and checked up front.

A run recipe names the data, the categories, the judges (models x prompts), the repeats, the
second-level reviews, the tuned judges, the guard models and the reference judges::

    name: quickstart
    data: {recipe: recipes/data/quickstart.yaml}   # or {dir: built/data} or {files: {train: a.jsonl, test: b.jsonl}}
    split: test
    categories: [jailbreak, over_refusal]          # default: every category in the data
    limit: null                                    # examples per category (stratified subsample)
    repeats: 5                                     # repeat r uses seed + r
    seed: 0
    few_shot: 4                                    # exemplars for the few_shot prompt (train split only)
    judges:
      - {models: [smollm2-135m], prompts: [basic, criteria, cot, few_shot, score], backend: hf}
    second_level:                                  # one mapping or a list
      - {judge: smollm2-135m/basic, reviewer: {model: smollm2-135m}}   # judge: a first-level name, or best
    tuned: [runs/quickstart/judge]                 # folders holding judge.json
    guards: [{model: meta-llama/Llama-Guard-3-1B, kind: llama_guard}]
    reference: [tfidf, refusal_phrases]            # the honest floors (default: both)

Everything it names is checked before any work starts (unknown keys, models, prompts, categories,
tuned folders, guard kinds, data paths), and all problems are reported together, each as
``<file>: field '<name>': expected <what>, got <value>``. Relative paths are looked up from the
working directory, then the recipe's folder, then the project root.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation import registry
from evaluation.backends.options import REFERENCE_MODELS
from evaluation.guards.options import GUARD_KINDS
from evaluation.records import JudgeName
from evaluation.types import JudgeSpec, short_model_name
from recipes.categories import list_categories
from recipes.judge_card import JUDGE_CARD, JudgeCard
from recipes.loader import Problems, RecipeError, at_least, non_empty, parse_into, read_yaml
from recipes.paths import resolve_path
from recipes.prompts import FIRST_LEVEL, load_template
from recipes.schema import DataError
from recipes.splits import SPLITS


Resolver = Callable[[Any, Any, str], Any]


__all__ = [
    "GUARD_KINDS",
    "Cell",
    "DataConfig",
    "GuardConfig",
    "JudgeEntry",
    "JudgeGroupConfig",
    "ReviewerConfig",
    "RunRecipe",
    "RunRecipeError",
    "SecondLevelConfig",
    "expand_judges",
    "load_run_recipe",
    "parse_run_recipe",
    "plan",
    "resolve_path",
]

BEST = "best"


class RunRecipeError(RecipeError):
    """Every problem found in a run recipe, reported together."""


@dataclass
class DataConfig:
    """Where the examples come from: exactly one of ``recipe``, ``dir`` or ``files``."""

    recipe: str | None = field(default=None, metadata={"help": "data recipe YAML, built in memory (deterministic)"})
    dir: str | None = field(default=None, metadata={"help": "a folder written by `judgeforge data build`"})
    files: dict[str, str] | None = field(
        default=None, metadata={"help": "JSON Lines of judgment examples per split, e.g. {train: a, test: b}"}
    )


_TEMPERATURE = {"check": lambda t: t >= 0, "expected": "a number >= 0"}


@dataclass
class JudgeGroupConfig:
    """Prompted judges: every model with every prompt."""

    models: list[str] = field(metadata={"help": "model names: aliases, hub ids, local folders, served names"})
    prompts: list[str] = field(default_factory=lambda: ["basic"], metadata={"help": "first-level prompt names"})
    backend: str = field(default="hf", metadata={"help": "judge backend", "choices": registry.backend_names})
    temperature: float = field(
        default=0.0, metadata={"help": "0 = greedy; above 0 repeats sample anew", **_TEMPERATURE}
    )
    max_new_tokens: int = field(default=128, metadata={"help": "generation budget", **at_least(1)})
    batch_size: int = field(
        default=8, metadata={"help": "examples per judge call (one store write each)", **at_least(1)}
    )
    options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "backend options", "options_of": "backend"}
    )


@dataclass
class ReviewerConfig:
    """The second-level reviewer's model and backend."""

    model: str = field(metadata={"help": "reviewer model"})
    backend: str = field(default="hf", metadata={"help": "judge backend", "choices": registry.backend_names})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy", **_TEMPERATURE})
    max_new_tokens: int = field(default=128, metadata={"help": "generation budget", **at_least(1)})
    batch_size: int = field(default=8, metadata={"help": "examples per call", **at_least(1)})
    options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "backend options", "options_of": "backend"}
    )


@dataclass
class SecondLevelConfig:
    """A reviewer that re-judges one first-level judge's stored verdicts."""

    judge: str = field(
        metadata={
            "help": "name of a first-level judge (model/prompt), or `best`",
            "expected": "the name of a first-level judge (model/prompt) or `best`",
        }
    )
    reviewer: ReviewerConfig = field(metadata={"help": "the reviewing model"})


@dataclass
class GuardConfig:
    """A published guard model (Llama Guard 3, ShieldGemma)."""

    model: str = field(metadata={"help": "hub id or local folder"})
    kind: str = field(metadata={"help": f"one of {GUARD_KINDS}"})
    batch_size: int = field(default=8, metadata={"help": "examples per call", **at_least(1)})
    options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "guard options (threshold, ...)", "options_of": "kind"}
    )


@dataclass
class RunRecipe:
    """A parsed run recipe (see the module docstring for the YAML)."""

    name: str = field(metadata={"help": "run name, shown in reports", **non_empty()})
    data: DataConfig = field(metadata={"help": "where the examples come from"})
    split: str = field(default="test", metadata={"help": "evaluated split", "choices": SPLITS})
    categories: list[str] | None = field(default=None, metadata={"help": "categories (default: all in the data)"})
    limit: int | None = field(
        default=None, metadata={"help": "examples per category (stratified subsample)", **at_least(1)}
    )
    repeats: int = field(default=5, metadata={"help": "repeats of every judge (seed + r)", **at_least(1)})
    seed: int = field(
        default=0, metadata={"help": "base seed of repeats, exemplars, subsamples, bootstrap", **at_least(0)}
    )
    few_shot: int = field(
        default=4, metadata={"help": "exemplars shown by the few_shot prompt (train split)", **at_least(0)}
    )
    judges: list[JudgeGroupConfig] = field(default_factory=list, metadata={"help": "prompted judge groups"})
    second_level: list[SecondLevelConfig] = field(default_factory=list, metadata={"help": "second-level reviews"})
    tuned: list[str] = field(default_factory=list, metadata={"help": "tuned-judge folders (judge.json)"})
    guards: list[GuardConfig] = field(default_factory=list, metadata={"help": "guard models"})
    reference: list[str] = field(
        default_factory=lambda: list(REFERENCE_MODELS), metadata={"help": "reference judges (the honest floors)"}
    )
    categories_dirs: list[str] = field(default_factory=list, metadata={"help": "extra category folders"})
    n_boot: int = field(default=1000, metadata={"help": "bootstrap resamples for confidence intervals", **at_least(0)})
    plugins: list[str] = field(
        default_factory=list, metadata={"help": "modules imported first; they register their own backends"}
    )
    path: str = field(default="<memory>", metadata={"help": "file the recipe came from", "yaml": False})


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
# Parsing
# ----------------------------------------------------------------------------------------------


class _Problems(Problems):
    """The problems of one run recipe (raised as :class:`RunRecipeError`)."""

    def __init__(self, file: str):
        super().__init__(file, error=RunRecipeError, hint="`judgeforge recipe keys run`")


def parse_run_recipe(data: Any, path: str = "<memory>", *, options: Resolver | None = None) -> RunRecipe:
    """Turn loaded YAML into a :class:`RunRecipe`, reporting every unknown key and malformed value together.

    Args:
        data: the output of ``yaml.safe_load``.
        path: the file it came from (named in every problem).
        options: parses a judge's or reviewer's ``options`` for its backend,
            ``options(backend, options, key_path)``; without it they stay a mapping.
    """
    problems = _Problems(path)
    if isinstance(data, dict) and isinstance(data.get("plugins"), list):
        _load_plugins([str(m) for m in data["plugins"]], path, problems)  # they register backends checked below
    if options is None:
        options = _options_checker(path)
    if isinstance(data, dict):
        source = data.get("data")
        if isinstance(source, dict):
            given = [k for k in ("recipe", "dir", "files") if source.get(k)]
            if len(given) != 1:
                problems.add("data", "exactly one of recipe, dir, files", source)
    recipe = parse_into(RunRecipe, data, problems, "", {"options_of": options} if options else None)
    problems.raise_if_any()
    return dataclasses.replace(recipe, path=path)


def _options_checker(path: str) -> Resolver:
    """Check a judge's (or guard's) ``options`` against its options dataclass; keep the mapping (specs hold dicts)."""

    def check(chosen: Any, options: Any, key_path: str) -> Any:
        where = f"{path}: {key_path.removesuffix('.options')}"
        if chosen in GUARD_KINDS:  # a guard's options depend on its kind; its backend is the guard kind's
            guard = registry.judge_kind(registry.GUARD).backend
            options = options if isinstance(options, dict) else {}
            registry.parse_options(guard, {**options, "kind": chosen}, where)
        else:
            registry.parse_options(str(chosen), options, where)
        return options

    return check


def load_run_recipe(path: str | Path) -> RunRecipe:
    """Read and parse a run recipe file (``yaml.safe_load`` only)."""
    file = resolve_path(path)
    return parse_run_recipe(read_yaml(file, "run recipe"), str(file))


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


def _load_plugins(modules: list[str], file: str, problems: _Problems) -> None:
    try:
        registry.load_plugins(modules, file)
    except DataError as error:
        problems.items.append(error)


def _check_judge(
    backend: str, models: dict[str, str], options: dict[str, Any], where: str, problems: _Problems
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
    problems = _Problems(recipe.path)
    _load_plugins(recipe.plugins, recipe.path, problems)
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
