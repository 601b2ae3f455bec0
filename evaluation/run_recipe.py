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
    robustness: {limit: 4, variants: 1}            # attacked copies per judge (default on; false: off)

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
from evaluation.robustness import RobustnessConfig, parse_robustness
from recipes.loader import Problems, RecipeError, at_least, non_empty, parse_into, read_yaml
from recipes.paths import resolve_path
from recipes.schema import DataError
from recipes.splits import SPLITS


Resolver = Callable[[Any, Any, str], Any]


__all__ = [
    "GUARD_KINDS",
    "DataConfig",
    "GuardConfig",
    "JudgeGroupConfig",
    "ReviewerConfig",
    "RunRecipe",
    "RunRecipeError",
    "SecondLevelConfig",
    "load_run_recipe",
    "parse_run_recipe",
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
    backend: str = field(
        default=registry.DEFAULT_BACKEND, metadata={"help": "judge backend", "choices": registry.backend_names}
    )
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
    backend: str = field(
        default=registry.DEFAULT_BACKEND, metadata={"help": "judge backend", "choices": registry.backend_names}
    )
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
    robustness: RobustnessConfig | None = field(
        default_factory=RobustnessConfig,
        metadata={
            "help": "victim-side attacks on every first-level judge (robustness table): false, or "
            "{attacks, variants, limit, seed}; on by default",
            "parse": lambda value: parse_robustness(value, "<run recipe>"),
        },
    )
    categories_dirs: list[str] = field(default_factory=list, metadata={"help": "extra category folders"})
    n_boot: int = field(default=1000, metadata={"help": "bootstrap resamples for confidence intervals", **at_least(0)})
    plugins: list[str] = field(
        default_factory=list, metadata={"help": "modules imported first; they register their own backends"}
    )
    path: str = field(default="<memory>", metadata={"help": "file the recipe came from", "yaml": False})


# ----------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------


class RunProblems(Problems):
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
    problems = RunProblems(path)
    if isinstance(data, dict) and isinstance(data.get("plugins"), list):
        load_recipe_plugins([str(m) for m in data["plugins"]], path, problems)  # they register backends checked below
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


def load_recipe_plugins(modules: list[str], file: str, problems: RunProblems) -> None:
    try:
        registry.load_plugins(modules, file)
    except DataError as error:
        problems.items.append(error)
