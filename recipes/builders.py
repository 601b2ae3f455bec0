"""Builders: a data recipe in, the evaluation and SFT data sets plus their data card out.

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

:func:`build_from_file` writes ``<out>/eval`` (train/validation/test with
:data:`recipes.schema.FEATURES`), ``<out>/sft`` (train/validation in TRL's conversational format:
``messages`` = system, user, assistant; the assistant turn is the verdict JSON), the data card
(``data_card.json`` / ``data_card.md``) and ``recipe.yaml`` (the resolved recipe, sources inline).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import shutil
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import yaml
from tqdm.auto import tqdm

from recipes.categories import Category, load_category
from recipes.prompts import FieldBudget, JudgeTemplate, load_template, render_prompt
from recipes.schema import FEATURES, DataError, from_arrow_row, to_arrow_row
from recipes.sources import BadRowsError, OnBadRow, SourceConfig, SourceReport, load_source, parse_source
from recipes.splits import SPLITS, SplitFractions, assign_splits, dedupe_examples, subsample_stratified
from recipes.verdict import render_target


__all__ = [
    "SFT_FEATURES",
    "SFT_SPLITS",
    "BuiltData",
    "CategorySelection",
    "DataCard",
    "DataRecipe",
    "build_datasets",
    "build_from_file",
    "load_data_recipe",
    "load_examples",
    "sample_exemplars",
]

logger = logging.getLogger(__name__)

SFT_SPLITS = ("train", "validation")
SFT_FEATURES = datasets.Features(
    {
        "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "id": datasets.Value("string"),
        "category": datasets.Value("string"),
        "label": datasets.Value("int8"),
    }
)
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
)
_CARD_JSON, _CARD_MD, _RECIPE_YAML = "data_card.json", "data_card.md", "recipe.yaml"


# ----------------------------------------------------------------------------------------------
# The data recipe
# ----------------------------------------------------------------------------------------------


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

    name: str = field(metadata={"help": "recipe name, shown in the data card"})
    categories: list[CategorySelection] = field(metadata={"help": "categories and their sources"})
    splits: SplitFractions = field(default_factory=SplitFractions, metadata={"help": "train/validation/test"})
    seed: int = field(default=42, metadata={"help": "seed of every random choice (splits, limits, exemplars)"})
    prompt_template: str = field(default="basic", metadata={"help": "judge prompt the SFT set is rendered with"})
    budget: FieldBudget = field(default_factory=FieldBudget, metadata={"help": "per-field character budget"})
    limit_per_category: int | None = field(default=None, metadata={"help": "stratified subsample per category"})
    few_shot: int = field(default=4, metadata={"help": "exemplars from train for templates that show some"})
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
        description=str(data.get("description") or "").strip(),
        path=path,
    )


def _resolve_sources(
    recipe: DataRecipe, categories_dirs: Sequence[str | Path] | None
) -> list[tuple[Category, list[SourceConfig]]]:
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


def _resolved_dict(recipe: DataRecipe, resolved: list[tuple[Category, list[SourceConfig]]]) -> dict[str, Any]:
    data = recipe.to_dict()
    data["categories"] = [{"name": c.name, "sources": [s.raw for s in sources]} for c, sources in resolved]
    return data


def _hash(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# The data card
# ----------------------------------------------------------------------------------------------


@dataclass
class DataCard:
    """What a build produced and from what: counts, sources, duplicates, skipped rows, settings.

    ``counts`` is ``{category: {split: {"0": n, "1": n}}}``.
    """

    name: str
    recipe_hash: str
    prompt_template: str
    budget: dict[str, Any]
    seed: int
    splits: dict[str, float]
    counts: dict[str, dict[str, dict[str, int]]]
    sources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    duplicates_removed: dict[str, int] = field(default_factory=dict)
    duplicates_conflicting: dict[str, int] = field(default_factory=dict)
    subsampled: dict[str, int] = field(default_factory=dict)
    limit_per_category: int | None = None
    few_shot: int = 0
    exemplars: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, Any] = field(default_factory=lambda: {"total": 0, "reasons": {}, "rows": []})
    description: str = ""
    sft_splits: list[str] = field(default_factory=lambda: list(SFT_SPLITS))

    def total(self, split: str | None = None, label: int | None = None) -> int:
        """Examples in ``split`` (all splits when None) with ``label`` (both when None)."""
        return sum(
            n
            for per_split in self.counts.values()
            for name, per_label in per_split.items()
            if split in (None, name)
            for lb, n in per_label.items()
            if label is None or lb == str(label)
        )

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready data."""
        return dataclasses.asdict(self)

    def to_markdown(self) -> str:
        """The card as Markdown tables (what ``judgeforge data show`` prints)."""
        budget = ", ".join(f"{k} {v}" for k, v in self.budget.items())
        shares = " / ".join(f"{k} {v:g}" for k, v in self.splits.items())
        lines = [
            f"# Data card: {self.name}",
            "",
            f"recipe hash `{self.recipe_hash}` · template `{self.prompt_template}` · seed {self.seed} · {shares}",
            f"budget: {budget}"
            + (f" · limit per category {self.limit_per_category}" if self.limit_per_category else ""),
            "",
            "| category | label | " + " | ".join(SPLITS) + " | total |",
            "|---|---|" + "---:|" * (len(SPLITS) + 1),
        ]
        for category in sorted(self.counts):
            for label in ("1", "0"):
                cells = [self.counts[category].get(s, {}).get(label, 0) for s in SPLITS]
                lines.append(f"| {category} | {label} | " + " | ".join(map(str, cells)) + f" | {sum(cells)} |")
        cells = [self.total(s) for s in SPLITS]
        lines.append("| **all** | | " + " | ".join(map(str, cells)) + f" | {sum(cells)} |")
        lines += ["", "## Sources", "", "| category | source | kind | location | read | filtered | skipped | kept |"]
        lines.append("|---|---|---|---|---:|---:|---:|---:|")
        for category in sorted(self.sources):
            for r in self.sources[category]:
                lines.append(
                    f"| {category} | {r['name']} | {r['kind']} | {r['location']} | {r['rows_read']} | "
                    f"{r['filtered']} | {r['skipped']} | {r['loaded']} |"
                )
        removed = sum(self.duplicates_removed.values())
        lines += ["", f"Exact duplicates removed: {removed}" + (f" {self.duplicates_removed}" if removed else "")]
        if self.duplicates_conflicting:
            lines.append(f"Duplicates whose labels disagreed (first label kept): {self.duplicates_conflicting}")
        if self.subsampled:
            lines.append(f"Dropped by limit_per_category (stratified): {self.subsampled}")
        if self.exemplars:
            lines.append(f"Few-shot exemplars (from train): { {c: len(v) for c, v in self.exemplars.items()} }")
        lines.append(f"Skipped rows: {self.skipped.get('total', 0)}")
        for reason, n in self.skipped.get("reasons", {}).items():
            lines.append(f"- {n} × {reason}")
        return "\n".join(lines) + "\n"

    def write(self, folder: str | Path) -> None:
        """Write ``data_card.json`` and ``data_card.md`` into ``folder``."""
        folder = Path(folder)
        (folder / _CARD_JSON).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", "utf-8")
        (folder / _CARD_MD).write_text(self.to_markdown(), "utf-8")

    @classmethod
    def read(cls, folder: str | Path) -> DataCard:
        """Read the card of a built data folder."""
        path = Path(folder) / _CARD_JSON
        if not path.is_file():
            raise DataError(str(folder), None, _CARD_JSON, "a folder written by `judgeforge data build`", str(path))
        data = json.loads(path.read_text("utf-8"))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# ----------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------


@dataclass
class BuiltData:
    """The result of :func:`build_datasets` (nothing written yet)."""

    eval: datasets.DatasetDict
    sft: datasets.DatasetDict
    card: DataCard
    splits: dict[str, list[dict]]
    resolved_recipe: dict[str, Any]


def sample_exemplars(train_examples: Sequence[Mapping], category: str, k: int, seed: int) -> list[dict]:
    """``k`` labelled exemplars of ``category`` for few-shot prompts, drawn from TRAIN examples only.

    Balanced by label (positives and negatives alternate; when one label runs out the other fills
    in) and deterministic for a given train split and seed. Each exemplar carries ``explanation``
    from its ``meta`` when the source had one.
    """
    if k <= 0:
        return []
    rng = random.Random(f"{seed}:{category}:exemplars")
    pools = {}
    for label in (1, 0):
        pool = sorted(
            (e for e in train_examples if e["category"] == category and e["label"] == label), key=lambda e: e["id"]
        )
        rng.shuffle(pool)
        pools[label] = pool
    chosen: list[Mapping] = []
    turn = 1
    while len(chosen) < k and (pools[0] or pools[1]):
        pool = pools[turn] or pools[1 - turn]
        chosen.append(pool.pop(0))
        turn = 1 - turn
    return [{**e, "explanation": (e.get("meta") or {}).get("explanation", "")} for e in chosen]


def _check_template(recipe: DataRecipe) -> JudgeTemplate:
    template = load_template(recipe.prompt_template)
    if template.answer != "verdict" or not template.verdict_first:
        expected = "a verdict-first template (basic, criteria, few_shot): SFT targets are the verdict JSON"
        raise DataError(recipe.path, None, "prompt_template", expected, recipe.prompt_template)
    return template


def _unique_ids(examples: list[dict], on_bad_row: OnBadRow) -> tuple[list[dict], list[DataError]]:
    seen: dict[str, dict] = {}
    kept, problems = [], []
    for example in examples:
        first = seen.setdefault(example["id"], example)
        if first is example:
            kept.append(example)
            continue
        origin = str(example["meta"].get("origin", example["source"]))
        file, _, row = origin.rpartition(":")
        other = first["meta"].get("origin", first["source"])
        problems.append(
            DataError(file or origin, row or None, "id", f"a unique id (also used at {other})", example["id"])
        )
    if problems and on_bad_row == "error":
        raise BadRowsError(problems, len(problems))
    return kept, problems


def _eval_dataset(examples: Sequence[dict]) -> datasets.Dataset:
    rows = [to_arrow_row(e) for e in examples]
    return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in FEATURES}, features=FEATURES)


def _sft_dataset(
    examples: Sequence[dict],
    categories: Mapping[str, Category],
    template: JudgeTemplate,
    budget: FieldBudget,
    exemplars: Mapping[str, list[dict]],
    split: str,
) -> datasets.Dataset:
    columns: dict[str, list] = {"messages": [], "id": [], "category": [], "label": []}
    for example in tqdm(examples, total=len(examples), desc=f"render {split} prompts", unit="example", leave=False):
        category = categories[example["category"]]
        shown = exemplars.get(category.name) if category.name in exemplars else None
        rendered = render_prompt(template, category, example, exemplars=shown, budget=budget)
        target = render_target(category.positive, category.negative, example["label"])
        columns["messages"].append([*rendered.messages, {"role": "assistant", "content": target}])
        columns["id"].append(example["id"])
        columns["category"].append(example["category"])
        columns["label"].append(example["label"])
    return datasets.Dataset.from_dict(columns, features=SFT_FEATURES)


def _counts(splits: Mapping[str, Sequence[dict]], categories: Sequence[str]) -> dict[str, dict[str, dict[str, int]]]:
    counts = {c: {s: {"1": 0, "0": 0} for s in SPLITS} for c in categories}
    for split, examples in splits.items():
        for example in examples:
            counts[example["category"]][split][str(example["label"])] += 1
    return counts


def _skipped(reports: Sequence[SourceReport], id_problems: Sequence[DataError]) -> dict[str, Any]:
    reasons: Counter[str] = Counter()
    rows: list[str] = []
    for report in reports:
        reasons.update(report.skip_reasons)
        rows += report.skipped_rows
    for problem in id_problems:
        reasons[f"field 'id': expected {problem.expected.split(' (')[0]}"] += 1
        rows.append(str(problem))
    return {"total": sum(reasons.values()), "reasons": dict(reasons.most_common()), "rows": rows[:50]}


def build_datasets(
    recipe: DataRecipe,
    *,
    data_root: str | Path | None = None,
    on_bad_row: OnBadRow = "error",
    categories_dirs: Sequence[str | Path] | None = None,
) -> BuiltData:
    """Build the evaluation and SFT data sets of ``recipe`` in memory (reads sources, writes nothing).

    Steps: load every source (validated; bad rows raise or are skipped and counted), remove exact
    duplicates, check ids are unique, subsample to ``limit_per_category`` (stratified), split by
    group and label, draw few-shot exemplars from train, render the SFT conversations.

    Args:
        recipe: the data recipe.
        data_root: folder relative source paths are read from (e.g. ``../shared/data``).
        on_bad_row: ``error`` or ``skip``.
        categories_dirs: extra folders of category YAML files (searched before the built-in one).

    Raises:
        DataError: bad input, naming the file, row and field.
    """
    template = _check_template(recipe)
    resolved = _resolve_sources(recipe, categories_dirs)
    categories = {category.name: category for category, _ in resolved}
    examples: list[dict] = []
    reports: list[SourceReport] = []
    pinned: dict[str, str] = {}
    for category, sources in resolved:
        for source in sources:
            loaded = load_source(source, category.name, data_root=data_root, on_bad_row=on_bad_row)
            examples += loaded.examples
            reports.append(loaded.report)
            if source.assign_split:
                pinned.update((e["id"], source.assign_split) for e in loaded.examples)
    dedup = dedupe_examples(examples)
    unique, id_problems = _unique_ids(dedup.examples, on_bad_row)
    limited, dropped = subsample_stratified(unique, recipe.limit_per_category, recipe.seed)
    splits = assign_splits(limited, recipe.splits, recipe.seed, pinned=pinned)
    uses_exemplars = "exemplars" in template.system + template.user
    exemplars = (
        {name: sample_exemplars(splits["train"], name, recipe.few_shot, recipe.seed) for name in categories}
        if uses_exemplars
        else {}
    )
    eval_data = datasets.DatasetDict({split: _eval_dataset(splits[split]) for split in SPLITS})
    sft_data = datasets.DatasetDict(
        {s: _sft_dataset(splits[s], categories, template, recipe.budget, exemplars, s) for s in SFT_SPLITS}
    )
    resolved_recipe = _resolved_dict(recipe, resolved)
    by_category: dict[str, list[dict]] = defaultdict(list)
    for report in reports:
        by_category[report.category].append(dataclasses.asdict(report))
    card = DataCard(
        name=recipe.name,
        description=recipe.description,
        recipe_hash=_hash(resolved_recipe),
        prompt_template=template.name,
        budget=dataclasses.asdict(recipe.budget),
        seed=recipe.seed,
        splits=recipe.splits.as_dict(),
        counts=_counts(splits, list(categories)),
        sources=dict(by_category),
        duplicates_removed=dedup.removed,
        duplicates_conflicting=dedup.conflicting,
        subsampled=dropped,
        limit_per_category=recipe.limit_per_category,
        few_shot=recipe.few_shot if uses_exemplars else 0,
        exemplars={name: [e["id"] for e in chosen] for name, chosen in exemplars.items()},
        skipped=_skipped(reports, id_problems),
    )
    logger.info("built %s: %s examples (%s)", recipe.name, card.total(), {s: card.total(s) for s in SPLITS})
    return BuiltData(eval=eval_data, sft=sft_data, card=card, splits=splits, resolved_recipe=resolved_recipe)


def build_from_file(
    recipe_path: str | Path,
    out_dir: str | Path,
    *,
    data_root: str | Path | None = None,
    on_bad_row: OnBadRow = "error",
    categories_dirs: Sequence[str | Path] | None = None,
) -> DataCard:
    """Build a data recipe file and write ``eval/``, ``sft/``, the data card and ``recipe.yaml`` to ``out_dir``."""
    recipe = load_data_recipe(recipe_path)
    built = build_datasets(recipe, data_root=data_root, on_bad_row=on_bad_row, categories_dirs=categories_dirs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in (("eval", built.eval), ("sft", built.sft)):
        if (out / name).exists():
            shutil.rmtree(out / name)
        data.save_to_disk(str(out / name))
    built.card.write(out)
    with open(out / _RECIPE_YAML, "w", encoding="utf-8") as handle:
        yaml.safe_dump(built.resolved_recipe, handle, sort_keys=False, allow_unicode=True)
    logger.info("wrote %s", out)
    return built.card


def load_examples(data_dir: str | Path, split: str) -> list[dict]:
    """The decoded examples of ``split`` in ``<data_dir>/eval`` (chat prompts, context and meta restored)."""
    folder = Path(data_dir) / "eval"
    if not folder.is_dir():
        raise DataError(str(data_dir), None, "eval", "a folder written by `judgeforge data build`", str(folder))
    data = datasets.load_from_disk(str(folder))
    if split not in data:
        raise DataError(str(folder), None, "split", f"one of {list(data)}", split)
    return [from_arrow_row(row) for row in data[split]]
