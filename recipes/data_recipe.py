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
      - name: jailbreak
        sources: [gptfuzz, jailbreakbench, harmbench_val]
        caps: {gptfuzz: 300}         # rows at most per source (stratified; groups stay whole in splits)
        test_sources: [harmbench_val]   # only in test: training and validation never see it
    cap_per_source: 400              # the cap of every source without its own
    cap_by: rows                     # rows (spread over groups) or groups (whole groups)
    test_sources: [begin]            # held out in every category that reads it
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recipes.categories import Category, load_category
from recipes.mixtures import CAP_MODES, MixturePlan
from recipes.prompts import FieldBudget
from recipes.schema import DataError
from recipes.sources import SourceConfig, parse_source
from recipes.splits import SPLITS, SplitFractions


__all__ = ["CategorySelection", "DataRecipe", "load_data_recipe", "resolve_sources", "resolved_dict"]

_RECIPE_KEYS = (
    "name",
    "description",
    "categories",
    "splits",
    "seed",
    "prompt_template",
    "budget",
    "limit_per_category",
    "few_shot",
    "cap_per_source",
    "cap_by",
    "test_sources",
)
_SELECTION_KEYS = ("name", "sources", "caps", "test_sources")


@dataclass
class CategorySelection:
    """One category of a recipe and the sources to read for it."""

    name: str = field(metadata={"help": "category name (its YAML file's stem)"})
    sources: list[str | dict[str, Any]] = field(
        default_factory=list,
        metadata={"help": "source names from the category file and/or inline source mappings; empty: its first"},
    )
    caps: dict[str, int] = field(default_factory=dict, metadata={"help": "source -> rows at most"})
    test_sources: list[str] = field(default_factory=list, metadata={"help": "sources held out to test only"})


@dataclass
class DataRecipe:
    """A data recipe: what to read, how to split it and how to render the judge prompts.

    Attributes (data): ``name``, ``description``, ``categories``. (splits): ``splits``, ``seed``,
    ``limit_per_category``. (prompts): ``prompt_template``, ``budget``, ``few_shot``. ``path`` is
    the file it was read from (not a YAML key).
    """

    name: str = field(metadata={"help": "recipe name, shown in the data card"})
    categories: list[CategorySelection] = field(metadata={"help": "categories and their sources"})
    splits: SplitFractions = field(default_factory=SplitFractions, metadata={"help": "train/validation/test"})
    seed: int = field(default=42, metadata={"help": "seed of every random choice (splits, limits, exemplars)"})
    prompt_template: str = field(default="basic", metadata={"help": "judge prompt the SFT set is rendered with"})
    budget: FieldBudget = field(default_factory=FieldBudget, metadata={"help": "per-field character budget"})
    limit_per_category: int | None = field(default=None, metadata={"help": "stratified subsample per category"})
    few_shot: int = field(default=4, metadata={"help": "exemplars from train for templates that show some"})
    cap_per_source: int | None = field(default=None, metadata={"help": "rows at most per source (default cap)"})
    cap_by: str = field(default="rows", metadata={"help": "rows (spread over groups) or groups (whole groups)"})
    test_sources: list[str] = field(default_factory=list, metadata={"help": "sources held out in every category"})
    description: str = field(default="", metadata={"help": "free text"})
    path: str = field(default="<memory>", metadata={"help": "file the recipe was read from"})

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
        _check_cap(self.cap_per_source, where, "cap_per_source")
        if self.cap_by not in CAP_MODES:
            raise DataError(where, None, "cap_by", f"one of {list(CAP_MODES)}", self.cap_by)
        self.test_sources = _names(self.test_sources, where, None, "test_sources")
        if isinstance(self.few_shot, bool) or not isinstance(self.few_shot, int) or self.few_shot < 0:
            raise DataError(where, None, "few_shot", "a non-negative integer", self.few_shot)
        if not isinstance(self.prompt_template, str) or not self.prompt_template.strip():
            raise DataError(where, None, "prompt_template", "a template name such as basic", self.prompt_template)

    def to_dict(self) -> dict[str, Any]:
        """The recipe as YAML-ready data (no ``path``)."""
        return {
            "name": self.name,
            "description": self.description,
            "categories": [_selection_dict(c) for c in self.categories],
            "splits": self.splits.as_dict(),
            "seed": self.seed,
            "prompt_template": self.prompt_template,
            "budget": dataclasses.asdict(self.budget),
            "limit_per_category": self.limit_per_category,
            "few_shot": self.few_shot,
            **({"cap_per_source": self.cap_per_source} if self.cap_per_source else {}),
            **({"cap_by": self.cap_by} if self.cap_by != "rows" else {}),
            **({"test_sources": list(self.test_sources)} if self.test_sources else {}),
        }

    def mixture_plan(self, resolved: Sequence[tuple[Category, Sequence[SourceConfig]]]) -> MixturePlan:
        """The caps and held-out sources per category, checked against the sources each category reads.

        Raises:
            DataError: a cap or held-out source the category does not read, a global held-out source
                no category reads, or a category left with no source to train on.
        """
        selections = {c.name: c for c in self.categories}
        caps: dict[str, dict[str, int]] = {}
        held: dict[str, tuple[str, ...]] = {}
        for i, (category, sources) in enumerate(resolved):
            names = [s.name for s in sources]
            selection = selections[category.name]
            for key, listed in (("caps", selection.caps), ("test_sources", selection.test_sources)):
                unknown = sorted(set(listed) - set(names))
                if unknown:
                    raise DataError(self.path, f"categories[{i}]", key, f"sources of {category.name} {names}", unknown)
            caps[category.name] = {n: selection.caps.get(n, self.cap_per_source) for n in names}
            caps[category.name] = {n: cap for n, cap in caps[category.name].items() if cap}
            held[category.name] = tuple(n for n in names if n in selection.test_sources or n in self.test_sources)
            if held[category.name] and len(held[category.name]) == len(names):
                expected = "at least one source that is not held out (test_sources)"
                raise DataError(self.path, f"categories[{i}]", "test_sources", expected, list(held[category.name]))
        read = {s.name for _, sources in resolved for s in sources}
        missing = sorted(set(self.test_sources) - read)
        if missing:
            raise DataError(self.path, None, "test_sources", f"sources some category reads {sorted(read)}", missing)
        return MixturePlan(caps=caps, held_out={c: h for c, h in held.items() if h}, cap_by=self.cap_by)


def _check_cap(value: Any, where: str, key: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise DataError(where, None, key, "a positive integer or null", value)


def _names(value: Any, where: str, at: str | None, key: str) -> list[str]:
    items = [value] if isinstance(value, str) else (value or [])
    if not isinstance(items, list) or not all(isinstance(v, str) and v.strip() for v in items):
        raise DataError(where, at, key, "a list of source names", value)
    return list(items)


def _selection_dict(selection: CategorySelection) -> dict[str, Any]:
    data: dict[str, Any] = {"name": selection.name, "sources": list(selection.sources)}
    if selection.caps:
        data["caps"] = dict(selection.caps)
    if selection.test_sources:
        data["test_sources"] = list(selection.test_sources)
    return data


def _parse_splits(data: Any, where: str) -> SplitFractions:
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


def _parse_budget(data: Any, where: str) -> FieldBudget:
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
    unknown = sorted(set(item) - set(_SELECTION_KEYS))
    if unknown:
        raise DataError(where, at, unknown[0], f"one of {list(_SELECTION_KEYS)}", unknown[0])
    caps = item.get("caps") or {}
    if not isinstance(caps, Mapping) or not all(isinstance(k, str) for k in caps):
        raise DataError(where, at, "caps", "a mapping of source name -> rows at most", caps)
    for name, cap in caps.items():
        _check_cap(cap, where, f"{at}.caps.{name}")
    sources = item.get("sources") or []
    if isinstance(sources, str | Mapping):
        sources = [sources]
    if not isinstance(sources, list) or not all(isinstance(s, str | Mapping) for s in sources):
        raise DataError(where, at, "sources", "a list of source names or inline source mappings", sources)
    return CategorySelection(
        item["name"],
        [s if isinstance(s, str) else dict(s) for s in sources],
        caps=dict(caps),
        test_sources=_names(item.get("test_sources"), where, at, "test_sources"),
    )


def load_data_recipe(path: str | Path) -> DataRecipe:
    """Read a data recipe YAML file; unknown keys are rejected.

    Raises:
        DataError: naming the file and the key that is wrong.
    """
    path = str(path)
    if not Path(path).is_file():
        raise DataError(path, None, "recipe", "an existing data recipe YAML file", path)
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, dict):
        raise DataError(path, None, "<root>", "a mapping of recipe fields", type(data).__name__)
    unknown = sorted(set(data) - set(_RECIPE_KEYS))
    if unknown:
        raise DataError(path, None, unknown[0], f"one of {list(_RECIPE_KEYS)}", unknown[0])
    categories = data.get("categories")
    if not isinstance(categories, list):
        raise DataError(path, None, "categories", "a list of categories", categories)
    return DataRecipe(
        name=data.get("name"),
        categories=[_parse_selection(item, path, i) for i, item in enumerate(categories)],
        splits=data["splits"] if data.get("splits") is not None else SplitFractions(),
        seed=data.get("seed", 42),
        prompt_template=data.get("prompt_template", "basic"),
        budget=data.get("budget") or {},
        limit_per_category=data.get("limit_per_category"),
        few_shot=data.get("few_shot", 4),
        cap_per_source=data.get("cap_per_source"),
        cap_by=data.get("cap_by", "rows"),
        test_sources=data.get("test_sources") or [],
        description=str(data.get("description") or "").strip(),
        path=path,
    )


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
    selections = {c.name: c for c in recipe.categories}
    data["categories"] = [
        {**_selection_dict(selections[c.name]), "sources": [s.raw for s in sources]} for c, sources in resolved
    ]
    return data
