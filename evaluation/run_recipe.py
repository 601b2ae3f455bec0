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
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.judges import BACKENDS, JudgeSpec, short_model_name
from evaluation.reference import REFERENCE_MODELS
from recipes.categories import list_categories
from recipes.judge_card import JUDGE_CARD, JudgeCard
from recipes.loader import Problems, RecipeError, at_least, non_empty, parse_into, read_yaml
from recipes.models import ALIASES
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
    "Job",
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

GUARD_KINDS = ("llama_guard", "shieldgemma")
BEST = "best"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_LOCAL_BACKENDS = ("hf", "vllm")


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
    backend: str = field(default="hf", metadata={"help": "judge backend", "choices": BACKENDS})
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
    backend: str = field(default="hf", metadata={"help": "judge backend", "choices": BACKENDS})
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
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "backend options"})


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
    path: str = field(default="<memory>", metadata={"help": "file the recipe came from", "yaml": False})


@dataclass(frozen=True)
class JudgeEntry:
    """One judge of the run with what the report needs to place it."""

    spec: JudgeSpec
    kind: str  # prompted | tuned | guard | reference | second_level
    reviews: str = ""  # second level: the first-level judge it reviews (may be `best`)
    base_model: str = ""  # tuned: the model it was tuned from

    @property
    def name(self) -> str:
        """The judge's display name (its key in the store)."""
        return self.spec.name

    def deterministic(self) -> bool:
        """Whether every repeat gives the same result, so it is computed once and recorded per repeat.

        True for reference judges, and for greedy (temperature 0) local backends (``hf``, ``vllm``,
        ``guard``), whose forward pass is the same each time. A hosted API at temperature 0 is not
        assumed to be deterministic. ``options.deterministic`` overrides.
        """
        if "deterministic" in self.spec.options:
            return bool(self.spec.options["deterministic"])
        if self.spec.backend == "reference":
            return True
        return self.spec.backend in (*_LOCAL_BACKENDS, "guard") and self.spec.temperature == 0


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


Job = Cell  # deprecated name of :class:`Cell` ("job" now means a job recipe)


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
    if isinstance(data, dict):
        source = data.get("data")
        if isinstance(source, dict):
            given = [k for k in ("recipe", "dir", "files") if source.get(k)]
            if len(given) != 1:
                problems.add("data", "exactly one of recipe, dir, files", source)
    recipe = parse_into(RunRecipe, data, problems, "", {"options_of": options} if options else None)
    problems.raise_if_any()
    return dataclasses.replace(recipe, path=path)


def load_run_recipe(path: str | Path) -> RunRecipe:
    """Read and parse a run recipe file (``yaml.safe_load`` only)."""
    file = resolve_path(path)
    return parse_run_recipe(read_yaml(file, "run recipe"), str(file))


# ----------------------------------------------------------------------------------------------
# Expanding (scale-down lives in evaluation/scale.py)
# ----------------------------------------------------------------------------------------------


def _tuned_name(folder: str) -> str:
    return f"tuned:{short_model_name(folder)}"


def reviewer_name(first: str, reviewer: ReviewerConfig) -> str:
    """The second-level judge's name: ``<first judge>+review:<reviewer model>``."""
    return f"{first}+review:{short_model_name(reviewer.model)}"


def expand_judges(recipe: RunRecipe) -> list[JudgeEntry]:
    """Every judge of the run, in run order: reference, prompted, tuned, guards, then second level."""
    entries = [
        JudgeEntry(JudgeSpec(model=ref, prompt="-", backend="reference", name=f"reference/{ref}"), "reference")
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
                entries.append(JudgeEntry(spec, "prompted"))
    for folder in recipe.tuned:
        path = resolve_path(folder, recipe.path)
        card = JudgeCard.read(path) if (path / JUDGE_CARD).is_file() else None
        spec = JudgeSpec(
            model=str(path), prompt=card.prompt_template if card else "basic", backend="hf", name=_tuned_name(folder)
        )
        entries.append(JudgeEntry(spec, "tuned", base_model=card.base_model if card else ""))
    for guard in recipe.guards:
        options = {**guard.options, "kind": guard.kind}
        spec = JudgeSpec(
            model=guard.model, prompt=guard.kind, backend="guard", batch_size=guard.batch_size, options=options
        )
        entries.append(JudgeEntry(spec, "guard"))
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
        entries.append(JudgeEntry(spec, "second_level", reviews=review.judge))
    return entries


# ----------------------------------------------------------------------------------------------
# Checking names
# ----------------------------------------------------------------------------------------------


def _check_model(model: str, backend: str, where: str, problems: _Problems) -> None:
    if backend not in _LOCAL_BACKENDS and backend != "guard":
        return  # served models (openai) and the fake backend are named freely
    if model in ALIASES or Path(model).expanduser().is_dir():
        return
    if _HUB_ID.match(model) and not model.startswith((".", "/")) and not Path(model).parent.exists():
        return  # a hub id (org/name); fetched (or found in the cache) when the judge is built
    problems.add(where, f"a model alias ({', '.join(ALIASES)}), an existing folder or a hub id org/name", model)


def check_recipe(recipe: RunRecipe, data_categories: list[str] | None = None) -> None:
    """Check every name the recipe uses; raise one :class:`RunRecipeError` listing all problems.

    Args:
        recipe: the parsed recipe.
        data_categories: categories present in the data, when already known.
    """
    problems = _Problems(recipe.path)
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
        for j, model in enumerate(group.models):
            _check_model(model, group.backend, f"judges[{i}].models[{j}]", problems)
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
    for i, guard in enumerate(recipe.guards):
        if guard.kind not in GUARD_KINDS:
            problems.add(f"guards[{i}].kind", f"one of {GUARD_KINDS}", guard.kind)
        _check_model(guard.model, "guard", f"guards[{i}].model", problems)
    for i, ref in enumerate(recipe.reference):
        if ref not in REFERENCE_MODELS:
            problems.add(f"reference[{i}]", f"one of {REFERENCE_MODELS}", ref)
    entries = expand_judges(recipe) if not problems.items else []
    names = [e.name for e in entries]
    first_level = [e.name for e in entries if e.kind == "prompted"]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.add("judges", "each judge once (model/prompt pairs must be unique)", name)
    for i, review in enumerate(recipe.second_level):
        if entries and review.judge != BEST and review.judge not in first_level:
            problems.add(
                f"second_level[{i}].judge", f"`best` or a prompted judge: {', '.join(first_level)}", review.judge
            )
        if review.judge == BEST and entries and not first_level:
            problems.add(f"second_level[{i}].judge", "prompted judges to choose the best from", review.judge)
        _check_model(review.reviewer.model, review.reviewer.backend, f"second_level[{i}].reviewer.model", problems)
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
