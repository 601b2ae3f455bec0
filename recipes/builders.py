"""Builders: a data recipe in, the evaluation and SFT data sets plus their data card out.

:func:`build_from_file` writes ``<out>/eval`` (train/validation/test with
:data:`recipes.schema.FEATURES`), ``<out>/sft`` (train/validation in TRL's conversational format:
``messages`` = system, user, assistant; the assistant turn is the verdict JSON), the data card
(``data_card.json`` / ``data_card.md``) and ``recipe.yaml`` (the resolved recipe, sources inline).
The recipe schema lives in :mod:`recipes.data_recipe`, the card in :mod:`recipes.data_card`; their
names are re-exported here for older imports.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import yaml
from tqdm.auto import tqdm

from recipes.augment import augment_examples
from recipes.categories import Category
from recipes.data_card import SFT_SPLITS, DataCard
from recipes.data_recipe import CategorySelection, DataRecipe, load_data_recipe, resolve_sources, resolved_dict
from recipes.mixtures import mix, source_counts
from recipes.prompts import FieldBudget, JudgeTemplate, budget_dict, load_template, render_prompt
from recipes.schema import FEATURES, DataError, from_arrow_row, to_arrow_row
from recipes.sources import BadRowsError, OnBadRow, SourceReport, load_source
from recipes.splits import SPLITS, assign_splits, subsample_stratified
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

SFT_FEATURES = datasets.Features(
    {
        "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "id": datasets.Value("string"),
        "category": datasets.Value("string"),
        "label": datasets.Value("int8"),
    }
)
_RECIPE_YAML = "recipe.yaml"


def _hash(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


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
    render: str = "plain",
) -> datasets.Dataset:
    columns: dict[str, list] = {"messages": [], "id": [], "category": [], "label": []}
    for example in tqdm(examples, total=len(examples), desc=f"render {split} prompts", unit="example", leave=False):
        category = categories[example["category"]]
        shown = exemplars.get(category.name) if category.name in exemplars else None
        rendered = render_prompt(template, category, example, exemplars=shown, budget=budget, render=render)
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
    resolved = resolve_sources(recipe, categories_dirs)
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
    plan = recipe.mixture_plan(resolved)
    mixed, mixing = mix(examples, plan, recipe.seed)
    dedup = mixing.dedup
    unique, id_problems = _unique_ids(mixed, on_bad_row)
    limited, dropped = subsample_stratified(unique, recipe.limit_per_category, recipe.seed)
    splits = assign_splits(limited, recipe.splits, recipe.seed, pinned=pinned, held_out=plan.held_out)
    for example in splits["test"]:
        if example["source"] in plan.held_out.get(example["category"], ()):
            example["meta"]["held_out"] = True
    uses_exemplars = "exemplars" in template.system + template.user
    exemplars = (
        {name: sample_exemplars(splits["train"], name, recipe.few_shot, recipe.seed) for name in categories}
        if uses_exemplars
        else {}
    )
    eval_data = datasets.DatasetDict({split: _eval_dataset(splits[split]) for split in SPLITS})
    sft_rows = {s: splits[s] for s in SFT_SPLITS}
    augmented: dict[str, Any] = {}
    if recipe.augment:  # training rows only: validation and test stay clean
        copies, by_attack = augment_examples(splits["train"], categories, recipe.augment)
        sft_rows["train"] = splits["train"] + copies
        augmented = {"train": len(copies), "by_attack": by_attack, **recipe.augment.to_dict()}
    sft_data = datasets.DatasetDict(
        {
            s: _sft_dataset(sft_rows[s], categories, template, recipe.budget, exemplars, s, recipe.render)
            for s in SFT_SPLITS
        }
    )
    resolved_recipe = resolved_dict(recipe, resolved)
    by_category: dict[str, list[dict]] = defaultdict(list)
    for report in reports:
        by_category[report.category].append(dataclasses.asdict(report))
    card = DataCard(
        name=recipe.name,
        description=recipe.description,
        recipe_hash=_hash(resolved_recipe),
        prompt_template=template.name,
        budget=budget_dict(recipe.budget),
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
        label_origins={r.name: r.label_origin for r in reports},
        held_out={c: list(names) for c, names in plan.held_out.items()},
        source_counts=source_counts(splits),
        mixture=mixing.sources,
        duplicates_across_sources=mixing.across_sources,
        cap_by=plan.cap_by,
        render=recipe.render,
        augmented=augmented,
    )
    logger.info("built %s: %s examples (%s)", recipe.name, card.total(), {s: card.total(s) for s in SPLITS})
    return BuiltData(eval=eval_data, sft=sft_data, card=card, splits=splits, resolved_recipe=resolved_recipe)


# What ``datasets`` writes into a saved DatasetDict folder; anything else there is someone else's.
_SAVED_TOP, _SAVED_SPLIT = {"dataset_dict.json"}, ("data-*.arrow", "cache-*.arrow", "dataset_info.json", "state.json")


def _foreign_file(folder: Path) -> Path | None:
    """A file under a saved DatasetDict ``folder`` that ``save_to_disk`` did not write, if any."""
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            for inner in sorted(path.iterdir()):
                if inner.is_dir() or not any(inner.match(pattern) for pattern in _SAVED_SPLIT):
                    return inner
        elif path.name not in _SAVED_TOP:
            return path
    return None


def _check_out_dir(out: Path) -> None:
    """Refuse an ``--out`` where writing would replace or delete what a build did not write.

    A new or empty folder is fine; so is an earlier build's output (it has a readable data card),
    whose ``eval/`` and ``sft/`` are replaced only when they hold nothing but ``datasets`` files.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(str(out), None, "--out", "a folder", "a file")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    try:
        DataCard.read(out)
    except (DataError, ValueError, TypeError):
        expected = "an empty or new folder, or one an earlier `judgeforge data build` wrote (with its data card)"
        raise DataError(str(out), None, "--out", expected, f"a folder holding {entries[:8]}") from None
    for name in ("eval", "sft"):
        if (out / name).is_dir() and (foreign := _foreign_file(out / name)) is not None:
            expected = f"only what `data build` wrote in {name}/ (it is replaced; move this file elsewhere)"
            raise DataError(str(out), None, "--out", expected, str(foreign.relative_to(out)))


def _check_splits(built: BuiltData, recipe_path: str | Path) -> None:
    """Every split written must hold an example: ``datasets`` cannot read an empty split back."""
    for folder, data in (("eval", built.eval), ("sft", built.sft)):
        for split, rows in data.items():
            if len(rows) == 0:
                counts = ", ".join(f"{c} {sum(n[split].values())}" for c, n in sorted(built.card.counts.items()))
                expected = (
                    f"at least one example in {folder}/{split} (datasets cannot read an empty split back: "
                    "give the split a larger fraction, or the categories more rows)"
                )
                raise DataError(str(recipe_path), None, f"splits.{split}", expected, f"0 ({counts})")


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
    _check_splits(built, recipe_path)
    _check_out_dir(out)
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
