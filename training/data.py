"""Loading the SFT data set that ``judgeforge data build`` wrote, checked before any model loads.

A training run that fails ten minutes in because the data folder was the evaluation set, or a
category name was misspelt, wastes the run. Everything here is checked up front and reported with
the folder, the split and the field at fault.
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from recipes.categories import load_category
from recipes.schema import DataError


__all__ = ["BALANCE", "SFT_COLUMNS", "SFTData", "ensure_data_dir", "fixed_subset", "load_sft_data"]

logger = logging.getLogger(__name__)

SFT_COLUMNS = ("messages", "id", "category", "label")
_ROLES = ["system", "user", "assistant"]
# How a `train_rows` budget is spread: round-robin over categories, or over category x source x label
# cells (a mixture's small sources and the rarer label then get as many rows as the large ones).
BALANCE = ("category", "source_label")


@dataclass
class SFTData:
    """The checked training data and what ``judge.json`` and W&B need to know about it.

    Attributes:
        train: training rows (conversational ``messages`` plus ``id``, ``category``, ``label``).
        validation: validation rows, same columns.
        card: the data card (``recipe_hash``, ``prompt_template``, ``budget``, ...).
        verdict_words: ``{category: [positive, negative]}`` for every category kept.
    """

    train: datasets.Dataset
    validation: datasets.Dataset
    card: dict[str, Any]
    verdict_words: dict[str, list[str]]

    @property
    def categories(self) -> list[str]:
        """The categories being trained."""
        return sorted(self.verdict_words)


def _load_card(folder: Path) -> dict[str, Any]:
    path = folder / "data_card.json"
    if not path.is_file():
        raise DataError(str(folder), None, "data_card.json", "a data folder written by `judgeforge data build`", None)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(str(path), error.lineno, "<json>", "valid JSON", error.msg) from error
    for key in ("recipe_hash", "prompt_template"):
        if not isinstance(card.get(key), str) or not card[key]:
            raise DataError(str(path), None, key, "a non-empty string", card.get(key))
    return card


def _load_splits(folder: Path) -> datasets.DatasetDict:
    sft = folder / "sft"
    if not sft.is_dir():
        expected = "an SFT data set at <data_dir>/sft (run `judgeforge data build`)"
        raise DataError(str(folder), None, "sft", expected, sorted(p.name for p in folder.iterdir()))
    try:
        # In memory: the preprocessing maps that follow must not write cache files into the data folder.
        data = datasets.load_from_disk(str(sft), keep_in_memory=True)
    except (FileNotFoundError, ValueError) as error:
        raise DataError(str(sft), None, "sft", "a DatasetDict saved with save_to_disk", str(error)) from error
    if not isinstance(data, datasets.DatasetDict):
        raise DataError(str(sft), None, "sft", "a DatasetDict with train and validation splits", type(data).__name__)
    for split in ("train", "validation"):
        if split not in data:
            raise DataError(str(sft), None, "split", "train and validation splits", sorted(data))
        missing = [c for c in SFT_COLUMNS if c not in data[split].column_names]
        if missing:
            raise DataError(str(sft), split, missing[0], f"columns {list(SFT_COLUMNS)}", data[split].column_names)
    return data


def _check_rows(rows: datasets.Dataset, where: str) -> None:
    """Every conversation must be system, user, assistant with a non-empty answer and a 0/1 label."""
    for i, (messages, label) in enumerate(zip(rows["messages"], rows["label"])):
        roles = [m.get("role") for m in messages]
        if roles != _ROLES:
            raise DataError(where, i, "messages", f"roles {_ROLES}", roles)
        if not (messages[-1].get("content") or "").strip():
            raise DataError(where, i, "messages", "a non-empty assistant answer (the verdict JSON)", messages[-1])
        if label not in (0, 1):
            raise DataError(where, i, "label", "0 or 1", label)


def _select(
    data: datasets.DatasetDict, column: str, field: str, wanted: Sequence[str] | None, where: str
) -> datasets.DatasetDict:
    """Keep the rows whose ``column`` value is wanted; a wanted value absent from the data is an error on ``field``."""
    if not wanted:
        return data
    present = sorted(set(data["train"][column]) | set(data["validation"][column]))
    unknown = [v for v in wanted if v not in present]
    if unknown:
        raise DataError(where, None, field, f"{field} present in the data set {present}", unknown)
    keep = set(wanted)
    return datasets.DatasetDict(
        {split: rows.filter(lambda v: v in keep, input_columns=column) for split, rows in data.items()}
    )


def _with_sources(data: datasets.DatasetDict, folder: Path) -> datasets.DatasetDict:
    """Add each row's ``source`` (from ``<data_dir>/eval``, matched by id); ``""`` where the build kept none."""
    eval_dir = folder / "eval"
    known: dict[str, str] = {}
    if eval_dir.is_dir():
        examples = datasets.load_from_disk(str(eval_dir))
        for split in ("train", "validation"):
            if split in examples and "source" in examples[split].column_names:
                known.update(zip(examples[split]["id"], examples[split]["source"]))
    return datasets.DatasetDict(
        {split: rows.add_column("source", [known.get(i, "") for i in rows["id"]]) for split, rows in data.items()}
    )


def _balance_keys(rows: datasets.Dataset, balance: str) -> list[str]:
    if balance == "category":
        return list(rows["category"])
    return [f"{c}|{s}|{lb}" for c, s, lb in zip(rows["category"], rows["source"], rows["label"])]


def fixed_subset(categories: Sequence[str], n: int, seed: int) -> list[int]:
    """Indices of ``n`` rows, taken round-robin across categories from seeded shuffles.

    The same data, ``n`` and seed always give the same rows, so metrics from different steps (and
    from a resumed run) describe the same examples; round-robin keeps small categories present.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for index, category in enumerate(categories):
        groups[category].append(index)
    queues = []
    for category in sorted(groups):
        indices = groups[category]
        random.Random(f"{seed}:{category}").shuffle(indices)
        queues.append(indices)
    chosen: list[int] = []
    while len(chosen) < n and any(queues):
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.pop(0))
    return sorted(chosen)


def ensure_data_dir(data_dir: str | Path | None, data_recipe: str | None, data_root: str | None = None) -> None:
    """Build ``data_dir`` from ``data_recipe`` when it does not exist yet; never touches an existing folder.

    Under ``accelerate launch`` the local main process builds and the others wait for it.

    Raises:
        DataError: no ``data_dir`` exists and the config names no data recipe (the error names the
            ``judgeforge data build`` command that makes it), or the recipe cannot be built.
    """
    if not data_dir or Path(data_dir).exists():
        return
    if not data_recipe:
        expected = (
            "an existing folder written by `judgeforge data build` (run `judgeforge data build RECIPE --out "
            f"{data_dir}` first, or set `data_recipe: RECIPE` in the config to build it here)"
        )
        raise DataError(str(data_dir), None, "data_dir", expected, "no such folder")
    from accelerate import PartialState

    from recipes.builders import build_from_file

    with PartialState().local_main_process_first():
        if not Path(data_dir).exists():
            logger.info("data_dir %s does not exist: building it from %s", data_dir, data_recipe)
            build_from_file(data_recipe, data_dir, data_root=data_root)


def load_sft_data(
    data_dir: str | Path | None,
    *,
    categories: Sequence[str] | None = None,
    categories_dirs: Sequence[str | Path] | None = None,
    train_rows: int | None = None,
    seed: int = 42,
    sources: Sequence[str] | None = None,
    balance: str = "category",
) -> SFTData:
    """Load and check ``<data_dir>/sft`` and ``<data_dir>/data_card.json``.

    Args:
        data_dir: the folder ``judgeforge data build --out`` wrote.
        categories: keep only these categories.
        categories_dirs: extra category folders, to look up the verdict words of custom categories.
        train_rows: keep at most this many training rows (round-robin over categories, seeded).
        seed: seed of that subsample.
        sources: keep only rows of these sources (training and validation), e.g. one source of a mixture.
        balance: how ``train_rows`` is spread (:data:`BALANCE`): round-robin over categories, or over
            category x source x label cells.

    Raises:
        DataError: the folder is not a judgeforge SFT data set, a split or column is missing, a
            conversation is malformed, or a category is unknown.
    """
    if not data_dir:
        raise DataError("<config>", None, "data_dir", "the folder written by `judgeforge data build`", data_dir)
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DataError(str(folder), None, "data_dir", "an existing folder written by `judgeforge data build`", None)
    card = _load_card(folder)
    if balance not in BALANCE:
        raise DataError("<config>", None, "balance", f"one of {list(BALANCE)}", balance)
    data = _select(_load_splits(folder), "category", "categories", categories, str(folder))
    data = _select(_with_sources(data, folder), "source", "sources", sources, str(folder))
    for split in ("train", "validation"):
        if len(data[split]) == 0:
            raise DataError(str(folder / "sft"), split, "rows", "at least one row", 0)
        _check_rows(data[split], f"{folder / 'sft'}:{split}")
    train = data["train"]
    if train_rows is not None and train_rows < len(train):
        train = train.select(fixed_subset(_balance_keys(train, balance), train_rows, seed))
    names = sorted(set(train["category"]) | set(data["validation"]["category"]))
    extra = [str(d) for d in categories_dirs or []] or None
    words = {name: list(load_category(name, extra).verdict_words) for name in names}
    return SFTData(train=train, validation=data["validation"], card=card, verdict_words=words)


def drop_overlong(
    rows: datasets.Dataset, tokenizer: Any, max_length: int | None
) -> tuple[datasets.Dataset, list[str]]:
    """The rows whose whole conversation fits ``max_length`` tokens, and the ids of the others.

    TRL cuts a longer row at its end, which is where the verdict is: the row then teaches nothing, or the
    prompt without its verdict. Leaving such rows out here lets the run count and report them.
    """
    if max_length is None:
        return rows, []
    lengths = [
        len(tokenizer.apply_chat_template(m, tokenize=True, return_dict=True)["input_ids"]) for m in rows["messages"]
    ]
    fits = [n <= max_length for n in lengths]
    if all(fits):
        return rows, []
    dropped = [row_id for row_id, ok in zip(rows["id"], fits) if not ok]
    return rows.select([i for i, ok in enumerate(fits) if ok]), dropped
