"""The examples of a run: the evaluated split (subsampled per category) and the train split.

Loaded from a data recipe (built in memory), a built folder or JSON Lines files, checked against the
recipe's categories; the train split feeds few-shot exemplars and the reference judges only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.run_recipe import RunRecipe, RunRecipeError, resolve_path
from recipes.readers import read_jsonl_rows
from recipes.schema import DataError, validate_example
from recipes.splits import subsample_stratified


__all__ = ["RunData", "load_run_data"]


@dataclass
class RunData:
    """The examples a run judges and the train examples it may learn from."""

    examples: dict[str, list[dict]]
    train: list[dict]
    info: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] | None = None


def _read_jsonl(path: Path) -> list[dict]:
    return [validate_example(row, str(path), number) for number, row in read_jsonl_rows(path)]


def _load_splits(recipe: RunRecipe, data_root: str | Path | None) -> tuple[list[dict], list[dict], dict, dict | None]:
    data = recipe.data
    if data.files is not None:
        files = {split: resolve_path(path, recipe.path) for split, path in data.files.items()}
        train = _read_jsonl(files["train"]) if "train" in files else []
        info = {"source": "files", "files": {k: str(v) for k, v in files.items()}}
        return _read_jsonl(files[recipe.split]), train, info, None
    from recipes.builders import DataCard, build_datasets, load_data_recipe, load_examples

    if data.dir:
        folder = resolve_path(data.dir, recipe.path)
        card = DataCard.read(folder)
        train = load_examples(folder, "train") if card.total("train") else []
        info = {"source": "dir", "dir": str(folder), "recipe_hash": card.recipe_hash, "test_sources": card.held_out}
        return load_examples(folder, recipe.split), train, info, card.budget
    path = resolve_path(data.recipe or "", recipe.path)
    built = build_datasets(load_data_recipe(path), data_root=data_root, categories_dirs=recipe.categories_dirs or None)
    info = {"source": "recipe", "recipe": str(path), "recipe_hash": built.card.recipe_hash}
    info["test_sources"] = built.card.held_out
    return built.splits[recipe.split], built.splits["train"], info, built.card.budget


def _check_present(recipe: RunRecipe, present: list[str]) -> None:
    """The recipe's categories against those the loaded data holds (the rest was checked before loading)."""
    missing = [(i, name) for i, name in enumerate(recipe.categories or []) if name not in present]
    expected = f"a category present in the data ({', '.join(present)})"
    problems = [DataError(recipe.path, None, f"categories[{i}]", expected, name) for i, name in missing]
    if problems:
        raise RunRecipeError(problems)


def load_run_data(recipe: RunRecipe, *, data_root: str | Path | None = None) -> RunData:
    """Load the evaluated split per category (``limit`` applied, stratified) and the train split."""
    evaluated, train, info, budget = _load_splits(recipe, data_root)
    present = sorted({e["category"] for e in evaluated})
    _check_present(recipe, present)
    categories = recipe.categories or present
    if not categories:
        raise DataError(str(info), None, recipe.split, "examples in the evaluated split", 0)
    examples = {}
    dropped: dict[str, int] = {}
    for name in categories:
        rows = sorted((e for e in evaluated if e["category"] == name), key=lambda e: str(e["id"]))
        kept, removed = subsample_stratified(rows, recipe.limit, recipe.seed)
        examples[name] = sorted(kept, key=lambda e: str(e["id"]))
        dropped.update(removed)
    train = [e for e in train if e["category"] in categories]
    info |= {
        "split": recipe.split,
        "counts": {c: len(v) for c, v in examples.items()},
        "positives": {c: sum(e["label"] for e in v) for c, v in examples.items()},
        "train_counts": {c: sum(e["category"] == c for e in train) for c in categories},
        "dropped_by_limit": dropped,
        "limit": recipe.limit,
        "sources": {
            c: {
                "train": sorted({str(e.get("source") or "") for e in train if e["category"] == c}),
                "evaluated": sorted({str(e.get("source") or "") for e in examples[c]}),
            }
            for c in categories
        },
    }
    return RunData(examples=examples, train=train, info=info, budget=budget)


# ----------------------------------------------------------------------------------------------
# Judging
# ----------------------------------------------------------------------------------------------
