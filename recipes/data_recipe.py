"""The data recipe: its schema, its YAML loader and the resolution of its sources.

A data recipe (``recipes/data/*.yaml``) names the categories, which of their sources to read
(by name, or inline), the split fractions and seed, the judge prompt template and its field
budget, an optional per-category limit and the few-shot exemplar count::

    name: quickstart
    categories:
      - name: jailbreak
        sources: [embedded]          # names from the category file, or inline source mappings
      - harmful_content              # a bare name: the category's first source
    splits: {train: 0.6, validation: 0.2, test: 0.2}
    seed: 42
    prompt_template: basic
    budget: {prompt_chars: 1500, response_chars: 2000}
    limit_per_category: null
    few_shot: 4

Mixtures and source-held-out splits (see :mod:`recipes.mixtures`, :mod:`recipes.splits`)::

    categories:
      - {name: jailbreak, sources: [gptfuzz, jailbreakbench, harmbench_val]}
      - {name: hallucination, sources: [halueval, truthfulqa, begin]}
    caps: {jailbreak: {gptfuzz: 300}}   # rows at most per source (stratified; groups stay whole in splits)
    cap_per_source: 400                 # the cap of every source without its own
    cap_by: rows                        # rows (spread over groups) or groups (whole groups)
    test_sources: [harmbench_val]       # test only, in every category that reads it; or per category:
    # test_sources: {jailbreak: [harmbench_val], hallucination: [begin]}

Robustness training (:mod:`recipes.augment`)::

    render: marked                   # victim text between explicit markers (default: plain)
    augment: {attacks: [evaluator_note], fraction: 0.3, seed: 0}   # perturbed training rows only

``render`` and ``augment`` enter the recipe hash only when set, so recipes without them keep theirs.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recipes.augment import AugmentConfig, parse_augment
from recipes.categories import Category, load_category
from recipes.loader import at_least, load, non_empty, read_yaml
from recipes.mixtures import CAP_MODES, MixturePlan
from recipes.prompts import RENDER_HELP, RENDERS, BudgetError, FieldBudget, budget_dict, check_render, parse_budget
from recipes.schema import DataError
from recipes.sources import SourceConfig, parse_source
from recipes.splits import SPLITS, SplitFractions


__all__ = ["CategorySelection", "DataRecipe", "load_data_recipe", "resolve_sources", "resolved_dict"]

_ALL = "*"  # test_sources given as a list: held out in every category that reads them
_BUDGET_KEYS = ", ".join(f.name for f in dataclasses.fields(FieldBudget))


@dataclass
class CategorySelection:
    """One category of a recipe and the sources to read for it."""

    name: str = field(metadata={"help": "category name (its YAML file's stem)"})
    sources: list[str | dict[str, Any]] = field(
        default_factory=list,
        metadata={"help": "source names from the category file and/or inline source mappings; empty: its first"},
    )


@dataclass
class DataRecipe:
    """A data recipe: what to read, how to split it and how to render the judge prompts.

    Attributes (data): ``name``, ``description``, ``categories``. (splits): ``splits``, ``seed``,
    ``limit_per_category``. (prompts): ``prompt_template``, ``budget``, ``few_shot``, ``render``.
    (robustness training): ``augment``. ``path`` is
    the file it was read from (not a YAML key).
    """

    name: str = field(metadata={"help": "recipe name, shown in the data card", **non_empty()})
    categories: list[CategorySelection] = field(
        metadata={"help": "categories and their sources (a bare name: its first source)"}
    )
    splits: SplitFractions = field(
        default_factory=SplitFractions,
        metadata={"help": "train/validation/test fractions (a missing one is 0)", "parse": lambda v: _parse_splits(v)},
    )
    seed: int = field(default=42, metadata={"help": "seed of every random choice (splits, limits, exemplars)"})
    prompt_template: str = field(
        default="basic",
        metadata={"help": "judge prompt the SFT set is rendered with", **non_empty("a template name such as basic")},
    )
    budget: FieldBudget = field(
        default_factory=FieldBudget,
        metadata={"help": f"per-field character budget ({_BUDGET_KEYS})", "parse": lambda v: _parse_budget(v)},
    )
    limit_per_category: int | None = field(
        default=None, metadata={"help": "stratified subsample per category", **at_least(1)}
    )
    few_shot: int = field(
        default=4,
        metadata={"help": "exemplars from train for templates that show some", **at_least(0)},
    )
    cap_per_source: int | None = field(
        default=None, metadata={"help": "rows at most per source without its own cap", **at_least(1)}
    )
    cap_by: str = field(
        default="rows", metadata={"help": "rows (spread over groups) or groups (whole groups)", "choices": CAP_MODES}
    )
    caps: dict[str, dict[str, int]] = field(
        default_factory=dict,
        metadata={"help": "category -> {source -> rows at most} (stratified)", "parse": lambda v: _parse_caps(v)},
    )
    test_sources: dict[str, list[str]] = field(
        default_factory=dict,
        metadata={
            "help": "sources held out to test only: a list (every category that reads them) or category -> list",
            "parse": lambda v: _parse_test_sources(v),
        },
    )
    description: str = field(default="", metadata={"help": "free text"})
    render: str = field(
        default="plain",
        metadata={
            "help": RENDER_HELP,
            "choices": RENDERS,
        },
    )
    augment: AugmentConfig | None = field(
        default=None,
        metadata={
            "help": "perturbed copies of training rows (recipes.augment)",
            "parse": lambda v: parse_augment(v, "<recipe>"),
        },
    )
    path: str = field(default="<memory>", metadata={"help": "file the recipe was read from", "yaml": False})

    def __post_init__(self):
        where = self.path
        if not isinstance(self.name, str) or not self.name.strip():
            raise DataError(where, None, "name", "a non-empty string", self.name)
        if isinstance(self.splits, Mapping):
            self.splits = _parse_splits(self.splits, where)
        if isinstance(self.budget, Mapping):
            self.budget = _parse_budget(self.budget, where)
        self.categories = [
            c if isinstance(c, CategorySelection) else _parse_selection(c, where, i)
            for i, c in enumerate(self.categories or [])
        ]
        if not self.categories:
            raise DataError(where, None, "categories", "at least one category", self.categories)
        names = [c.name for c in self.categories]
        repeated = sorted(n for n, k in Counter(names).items() if k > 1)
        if repeated:
            raise DataError(where, None, "categories", "each category once", repeated)
        stray = sorted(set(self.budget.categories) - set(names))
        if stray:
            field_path = f"budget.categories.{stray[0]}"
            raise DataError(where, None, field_path, f"a category of this recipe {names}", stray[0])
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise DataError(where, None, "seed", "an integer", self.seed)
        limit = self.limit_per_category
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise DataError(where, None, "limit_per_category", "a positive integer or null", limit)
        _check_cap(self.cap_per_source, where, "cap_per_source")
        if self.cap_by not in CAP_MODES:
            raise DataError(where, None, "cap_by", f"one of {list(CAP_MODES)}", self.cap_by)
        self.caps, self.test_sources = _parse_caps(self.caps, where), _parse_test_sources(self.test_sources, where)
        if isinstance(self.few_shot, bool) or not isinstance(self.few_shot, int) or self.few_shot < 0:
            raise DataError(where, None, "few_shot", "a non-negative integer", self.few_shot)
        if not isinstance(self.prompt_template, str) or not self.prompt_template.strip():
            raise DataError(where, None, "prompt_template", "a template name such as basic", self.prompt_template)
        check_render(self.render, where)
        if isinstance(self.augment, Mapping):
            self.augment = parse_augment(self.augment, where)

    def to_dict(self) -> dict[str, Any]:
        """The recipe as YAML-ready data (no ``path``)."""
        data = {
            "name": self.name,
            "description": self.description,
            "categories": [{"name": c.name, "sources": list(c.sources)} for c in self.categories],
            "splits": self.splits.as_dict(),
            "seed": self.seed,
            "prompt_template": self.prompt_template,
            "budget": budget_dict(self.budget),
            "limit_per_category": self.limit_per_category,
            "few_shot": self.few_shot,
            **({"cap_per_source": self.cap_per_source} if self.cap_per_source else {}),
            **({"cap_by": self.cap_by} if self.cap_by != "rows" else {}),
            **({"caps": {c: dict(v) for c, v in self.caps.items()}} if self.caps else {}),
            **({"test_sources": {c: list(v) for c, v in self.test_sources.items()}} if self.test_sources else {}),
        }
        if self.render != "plain":  # only when set: recipes without it keep their hash
            data["render"] = self.render
        if self.augment:
            data["augment"] = self.augment.to_dict()
        return data

    def mixture_plan(self, resolved: Sequence[tuple[Category, Sequence[SourceConfig]]]) -> MixturePlan:
        """The caps and held-out sources per category, checked against the sources each category reads.

        Raises:
            DataError: a cap or held-out source the category does not read, a global held-out source
                no category reads, or a category left with no source to train on.
        """
        caps: dict[str, dict[str, int]] = {}
        held: dict[str, tuple[str, ...]] = {}
        everywhere = self.test_sources.get(_ALL, [])
        for i, (category, sources) in enumerate(resolved):
            names = [s.name for s in sources]
            own_caps, own_held = self.caps.get(category.name, {}), self.test_sources.get(category.name, [])
            for key, listed in (("caps", own_caps), ("test_sources", own_held)):
                unknown = sorted(set(listed) - set(names))
                if unknown:
                    expected = f"sources of {category.name} {names}"
                    raise DataError(self.path, None, f"{key}.{category.name}", expected, unknown)
            caps[category.name] = {n: c for n in names if (c := own_caps.get(n, self.cap_per_source))}
            held[category.name] = tuple(n for n in names if n in own_held or n in everywhere)
            if held[category.name] and len(held[category.name]) == len(names):
                expected = f"a source of {category.name} that is not held out"
                raise DataError(self.path, f"categories[{i}]", "test_sources", expected, list(held[category.name]))
        known = {c.name for c, _ in resolved}
        for key, table in (("caps", self.caps), ("test_sources", self.test_sources)):
            unknown = sorted(set(table) - known - {_ALL})
            if unknown:
                raise DataError(self.path, None, key, f"categories of the recipe {sorted(known)}", unknown)
        read = {s.name for _, sources in resolved for s in sources}
        missing = sorted(set(everywhere) - read)
        if missing:
            raise DataError(self.path, None, "test_sources", f"sources some category reads {sorted(read)}", missing)
        return MixturePlan(caps=caps, held_out={c: h for c, h in held.items() if h}, cap_by=self.cap_by)


def _check_cap(value: Any, where: str, key: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise DataError(where, None, key, "a positive integer or null", value)


def _parse_caps(data: Any, where: str = "<recipe>") -> dict[str, dict[str, int]]:
    data = {} if data is None else data
    expected = "a mapping of category -> {source: rows at most (a positive integer)}"
    if not isinstance(data, Mapping) or not all(isinstance(v, Mapping) for v in data.values()):
        raise DataError(where, None, "caps", expected, data)
    for category, per_source in data.items():
        for source, cap in per_source.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise DataError(where, None, f"caps.{category}.{source}", "a positive integer", cap)
    return {str(c): {str(s): n for s, n in v.items()} for c, v in data.items()}


def _parse_test_sources(data: Any, where: str = "<recipe>") -> dict[str, list[str]]:
    """A list (held out in every category that reads them) is kept under the key ``*``; a mapping is per category."""
    data = {} if data is None else data
    if isinstance(data, str | list):
        data = {_ALL: data}
    expected = "a list of source names, or a mapping of category -> list of source names"
    if not isinstance(data, Mapping):
        raise DataError(where, None, "test_sources", expected, data)
    parsed = {}
    for category, names in data.items():
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise DataError(where, None, f"test_sources.{category}", expected, names)
        parsed[str(category)] = list(names)
    return parsed


def _parse_splits(data: Any, where: str = "<recipe>") -> SplitFractions:
    if data is None:
        return SplitFractions()
    if not isinstance(data, Mapping):
        raise DataError(where, None, "splits", "a mapping {train: f, validation: f, test: f}", data)
    unknown = sorted(set(data) - set(SPLITS))
    if unknown:
        raise DataError(where, None, f"splits.{unknown[0]}", f"one of {list(SPLITS)}", unknown[0])
    values = {name: data.get(name, 0.0) for name in SPLITS}
    try:
        return SplitFractions(**values)
    except DataError as error:
        raise DataError(where, None, error.field, error.expected, error.got) from None


def _parse_budget(data: Any, where: str = "<recipe>") -> FieldBudget:
    try:
        return parse_budget({} if data is None else data)
    except BudgetError as error:
        raise DataError(where, None, error.field, error.expected, error.got) from None


def _parse_selection(item: Any, where: str, index: int) -> CategorySelection:
    at = f"categories[{index}]"
    if isinstance(item, str) and item.strip():
        return CategorySelection(item)
    if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
        raise DataError(where, at, "name", "a category name or {name: C, sources: [...]}", item)
    unknown = sorted(set(item) - {"name", "sources"})
    if unknown:
        raise DataError(where, at, unknown[0], "one of ['name', 'sources']", unknown[0])
    sources = item.get("sources") or []
    if isinstance(sources, str | Mapping):
        sources = [sources]
    if not isinstance(sources, list) or not all(isinstance(s, str | Mapping) for s in sources):
        raise DataError(where, at, "sources", "a list of source names or inline source mappings", sources)
    return CategorySelection(item["name"], [s if isinstance(s, str) else dict(s) for s in sources])


def load_data_recipe(path: str | Path) -> DataRecipe:
    """Read a data recipe YAML file, reporting every unknown key and bad value together.

    Raises:
        recipes.loader.RecipeError: each problem as ``<file>: field '<key>'`` (inside a category:
            ``<file>:categories[i]: field '<key>'``).
    """
    path = str(path)
    data = read_yaml(path, "data recipe")
    if isinstance(data, dict) and isinstance(data.get("categories"), str | list):  # a bare name: {name: NAME}
        given = data["categories"] if isinstance(data["categories"], list) else [data["categories"]]
        data["categories"] = [{"name": c} if isinstance(c, str) and c.strip() else c for c in given]
    hint = "`judgeforge recipe keys data`"
    recipe = load(DataRecipe, data, path, item_rows=True, hint=hint)
    return dataclasses.replace(recipe, description=recipe.description.strip(), path=path)


def resolve_sources(
    recipe: DataRecipe, categories_dirs: Sequence[str | Path] | None
) -> list[tuple[Category, list[SourceConfig]]]:
    """Each category of ``recipe`` with the parsed configs of the sources it selects (named or inline)."""
    resolved = []
    for i, selection in enumerate(recipe.categories):
        category = load_category(selection.name, list(categories_dirs or []) or None)
        by_name = {s.get("name"): (j, s) for j, s in enumerate(category.sources)}
        wanted = selection.sources or ([category.sources[0]["name"]] if category.sources else [])
        if not wanted:
            expected = "at least one source (in the category file or inline in the recipe)"
            raise DataError(recipe.path, f"categories[{i}]", "sources", f"{expected}; {category.path} has none", [])
        configs = []
        for k, item in enumerate(wanted):
            if isinstance(item, str):
                if item not in by_name:
                    expected = f"a source of {category.name} ({sorted(map(str, by_name))}) or an inline mapping"
                    raise DataError(recipe.path, f"categories[{i}].sources[{k}]", "sources", expected, item)
                j, mapping = by_name[item]
                configs.append(parse_source(mapping, origin=category.path, where=f"sources[{j}]"))
            else:
                configs.append(parse_source(item, origin=recipe.path, where=f"categories[{i}].sources[{k}]"))
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise DataError(recipe.path, f"categories[{i}]", "sources", "each source once", names)
        resolved.append((category, configs))
    return resolved


def resolved_dict(recipe: DataRecipe, resolved: list[tuple[Category, list[SourceConfig]]]) -> dict[str, Any]:
    """The recipe as YAML-ready data with every source written inline (what ``recipe.yaml`` holds)."""
    data = recipe.to_dict()
    data["categories"] = [{"name": c.name, "sources": [s.raw for s in sources]} for c, sources in resolved]
    return data
