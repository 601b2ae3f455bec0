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
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recipes.categories import Category, load_category
from recipes.loader import at_least, load, non_empty, read_yaml
from recipes.prompts import FieldBudget
from recipes.schema import DataError
from recipes.sources import SourceConfig, parse_source
from recipes.splits import SPLITS, SplitFractions


__all__ = ["CategorySelection", "DataRecipe", "load_data_recipe", "resolve_sources", "resolved_dict"]

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
    ``limit_per_category``. (prompts): ``prompt_template``, ``budget``, ``few_shot``. ``path`` is
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
    description: str = field(default="", metadata={"help": "free text"})
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
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise DataError(where, None, "seed", "an integer", self.seed)
        limit = self.limit_per_category
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise DataError(where, None, "limit_per_category", "a positive integer or null", limit)
        if isinstance(self.few_shot, bool) or not isinstance(self.few_shot, int) or self.few_shot < 0:
            raise DataError(where, None, "few_shot", "a non-negative integer", self.few_shot)
        if not isinstance(self.prompt_template, str) or not self.prompt_template.strip():
            raise DataError(where, None, "prompt_template", "a template name such as basic", self.prompt_template)

    def to_dict(self) -> dict[str, Any]:
        """The recipe as YAML-ready data (no ``path``)."""
        return {
            "name": self.name,
            "description": self.description,
            "categories": [{"name": c.name, "sources": list(c.sources)} for c in self.categories],
            "splits": self.splits.as_dict(),
            "seed": self.seed,
            "prompt_template": self.prompt_template,
            "budget": dataclasses.asdict(self.budget),
            "limit_per_category": self.limit_per_category,
            "few_shot": self.few_shot,
        }


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
    data = {} if data is None else data
    known = [f.name for f in dataclasses.fields(FieldBudget)]
    if not isinstance(data, Mapping):
        raise DataError(where, None, "budget", f"a mapping with keys among {known}", data)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise DataError(where, None, f"budget.{unknown[0]}", f"one of {known}", unknown[0])
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise DataError(where, None, f"budget.{key}", "a non-negative number", value)
    return FieldBudget(**data)


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
