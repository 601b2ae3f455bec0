"""Deterministic train / validation / test splits: deduplicated, grouped, stratified by label.

A judge scored on an example whose twin (the same underlying question under another jailbreak
template, the same prompt answered by another model) sat in its training data is scored on
memory. So examples are split by ``group``: every example of a group lands in one split, and
:func:`check_group_leaks` proves it afterwards. Within that constraint each category is split on
its own and each split gets its share of each source's positives and negatives. Exact duplicates (same category,
prompt and response) are removed first and counted. The same input and seed always give the
same splits: every random choice comes from a ``random.Random`` seeded by the seed and category.

Source-held-out splits (``test_sources`` in a data recipe): every row of a held-out source goes to
``test`` and training and validation never see it, nor any group it shares with another source
(such a group goes to test whole); the other sources are split by the fractions as usual. The
held-out rows are told apart from the in-source test rows by their ``source`` and
``meta["held_out"]`` (the data card lists the held-out sources per category). A named source that
serves several categories (HarmBench: jailbreak and harmful_content) puts a row in the same split in
all of them (its group follows it), so a row never trains one category while it tests another.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from recipes.schema import DataError


__all__ = [
    "SPLITS",
    "DedupResult",
    "SplitFractions",
    "assign_splits",
    "check_group_leaks",
    "check_held_out",
    "content_key",
    "dedupe_examples",
    "label_quotas",
    "subsample_stratified",
]

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitFractions:
    """The share of each category's examples that goes to each split (they sum to 1)."""

    train: float = field(default=0.8, metadata={"help": "fraction for training"})
    validation: float = field(default=0.1, metadata={"help": "fraction for validation (model selection)"})
    test: float = field(default=0.1, metadata={"help": "fraction held out for evaluation"})

    def __post_init__(self):
        for name in SPLITS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise DataError("<recipe>", None, f"splits.{name}", "a fraction between 0 and 1", value)
        total = self.train + self.validation + self.test
        if abs(total - 1) > 1e-6:
            raise DataError("<recipe>", None, "splits", "fractions that sum to 1", total)
        if self.train <= 0:
            raise DataError("<recipe>", None, "splits.train", "a fraction above 0", self.train)

    def as_dict(self) -> dict[str, float]:
        """``{split: fraction}``."""
        return {name: float(getattr(self, name)) for name in SPLITS}


@dataclass
class DedupResult:
    """Examples with exact duplicates removed, and what was removed per category."""

    examples: list[dict]
    removed: dict[str, int]
    conflicting: dict[str, int]


def content_key(example: Mapping, *, category: bool = True) -> str:
    """What makes two examples duplicates: category (unless ``category=False``), prompt and response."""
    prompt = example["prompt"]
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False, sort_keys=True)
    return json.dumps([example["category"] if category else "", text, example["response"]], ensure_ascii=False)


def dedupe_examples(examples: Sequence[dict]) -> DedupResult:
    """Keep the first of every set of examples with the same category, prompt and response.

    Duplicates whose labels disagree are counted separately (``conflicting``): the first label is
    kept and the disagreement is reported rather than hidden.
    """
    seen: dict[str, dict] = {}
    kept: list[dict] = []
    removed: Counter[str] = Counter()
    conflicting: Counter[str] = Counter()
    for example in examples:
        key = content_key(example)
        first = seen.get(key)
        if first is None:
            seen[key] = example
            kept.append(example)
            continue
        removed[example["category"]] += 1
        if first["label"] != example["label"]:
            conflicting[example["category"]] += 1
    if removed:
        logger.info("removed %d exact duplicates (%s)", sum(removed.values()), dict(removed))
    return DedupResult(kept, dict(removed), dict(conflicting))


def _by_category(examples: Sequence[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for example in examples:
        grouped[example["category"]].append(example)
    return grouped


def label_quotas(counts: Mapping[int, int], limit: int) -> dict[int, int]:
    """Split ``limit`` across labels in proportion to ``counts`` (largest remainder)."""
    total = sum(counts.values())
    exact = {label: limit * n / total for label, n in counts.items()}
    quotas = {label: min(int(value), counts[label]) for label, value in exact.items()}
    order = sorted(counts, key=lambda label: (-(exact[label] - int(exact[label])), label))
    while sum(quotas.values()) < limit:
        for label in order:
            if sum(quotas.values()) < limit and quotas[label] < counts[label]:
                quotas[label] += 1
    return quotas


def subsample_stratified(examples: Sequence[dict], limit: int | None, seed: int) -> tuple[list[dict], dict[str, int]]:
    """At most ``limit`` examples per category, keeping each category's label balance.

    Returns the kept examples (in their original order) and how many were dropped per category.
    """
    if not limit:
        return list(examples), {}
    keep: set[int] = set()
    dropped: dict[str, int] = {}
    for category, items in _by_category(examples).items():
        if len(items) <= limit:
            keep.update(id(e) for e in items)
            continue
        rng = random.Random(f"{seed}:{category}:limit")
        by_label: dict[int, list[dict]] = defaultdict(list)
        for example in items:
            by_label[example["label"]].append(example)
        for label, quota in label_quotas({k: len(v) for k, v in by_label.items()}, limit).items():
            pool = sorted(by_label[label], key=lambda e: e["id"])
            keep.update(id(e) for e in rng.sample(pool, quota))
        dropped[category] = len(items) - limit
    return [e for e in examples if id(e) in keep], dropped


def _origin(example: Mapping) -> tuple[str, str | None]:
    origin = str((example.get("meta") or {}).get("origin") or example.get("source") or "<memory>")
    file, _, row = origin.rpartition(":")
    return (file, row) if file and row.isdigit() else (origin, None)


def _leak_error(example: Mapping, group: str, splits: Sequence[str]) -> DataError:
    file, row = _origin(example)
    got = f"group {group!r} of category {example['category']!r} in {' and '.join(splits)}"
    return DataError(file, row, "group", "every example of a group in one split", got)


def _need(labels: Counter, target: Mapping[tuple[str, int], float], count: Counter, totals: Counter) -> float:
    """How far a split falls behind its targets for the strata a group brings (share of each stratum)."""
    return sum(n * (target[label] - count[label]) / totals[label] for label, n in labels.items())


_PRIORITY = {"test": 0, "validation": 1, "train": 2}


def _stratum(example: Mapping) -> tuple[str, int]:
    """Splits are stratified by source and label, so every source of a mixture is in every split."""
    return example["source"], example["label"]


def _link(example: Mapping) -> str:
    return example["source"] + "\0" + content_key(example, category=False)


def assign_splits(
    examples: Sequence[dict],
    fractions: SplitFractions,
    seed: int,
    *,
    pinned: Mapping[str, str] | None = None,
    held_out: Mapping[str, Collection[str]] | None = None,
) -> dict[str, list[dict]]:
    """Assign whole groups to splits, per category, stratified by label.

    Groups are visited largest first (ties in a seeded random order) and each goes to the split
    whose (source, label) counts fall furthest behind its targets, weighted by the group's own rows.

    Args:
        examples: validated, deduplicated examples.
        fractions: the share of each split.
        seed: the seed; the same input and seed give the same splits.
        pinned: ``{example id: split}`` for sources pinned to a split (``assign_split``).
        held_out: ``{category: source names}`` whose rows (and groups) go to test only.

    Raises:
        DataError: when one group holds examples pinned to two different splits.
    """
    pinned = pinned or {}
    held_out = held_out or {}
    share = fractions.as_dict()
    open_splits = [name for name in SPLITS if share[name] > 0]
    result: dict[str, list[dict]] = {name: [] for name in SPLITS}
    placed: dict[int, str] = {}
    # A named source's row -> its split, shared by the categories the source serves; held-out rows in test.
    linked: dict[str, str] = {_link(e): "test" for e in examples if e["source"] in held_out.get(e["category"], ())}
    for category, items in _by_category(examples).items():
        groups: dict[str, list[dict]] = defaultdict(list)
        for example in items:
            groups[example["group"]].append(example)
        tested = {e["group"] for e in items if e["source"] in held_out.get(category, ())}
        free = [e for e in items if e["group"] not in tested]
        keys = sorted({e["group"] for e in free})
        random.Random(f"{seed}:{category}").shuffle(keys)
        # Pinned groups first, so the free ones fill in around them; then the largest first.
        keys.sort(key=lambda key: (not any(e["id"] in pinned for e in groups[key]), -len(groups[key])))
        totals = Counter(_stratum(example) for example in free)
        target = {name: {label: share[name] * n for label, n in totals.items()} for name in SPLITS}
        count: dict[str, Counter[tuple[str, int]]] = {name: Counter() for name in SPLITS}
        for key in sorted(tested):
            for example in groups[key]:
                placed[id(example)] = "test"
        for key in keys:
            members = groups[key]
            wanted = sorted({pinned[e["id"]] for e in members if e["id"] in pinned})
            if len(wanted) > 1:
                raise _leak_error(next(e for e in members if e["id"] in pinned), key, wanted)
            links = sorted({linked.get(_link(e)) for e in members if e["source"]} - {None}, key=_PRIORITY.get)
            labels = Counter(_stratum(e) for e in members)
            if wanted:
                chosen = wanted[0]
            elif links:
                chosen = links[0]
            else:
                needs = [_need(labels, target[name], count[name], totals) for name in open_splits]
                chosen = open_splits[needs.index(max(needs))]
            count[chosen].update(labels)
            for example in members:
                placed[id(example)] = chosen
                if example["source"]:
                    linked.setdefault(_link(example), chosen)
    for example in examples:
        result[placed[id(example)]].append(example)
    check_group_leaks(result)
    check_held_out(result, held_out)
    return result


def check_held_out(splits: Mapping[str, Sequence[Mapping]], held_out: Mapping[str, Collection[str]]) -> None:
    """Raise when a held-out source's row, or a group it holds, is in train or validation.

    Raises:
        DataError: naming the row, the field ``source`` (or ``group``) and the split it was found in.
    """
    tested = {
        (e["category"], e["group"]) for e in splits.get("test", []) if e["source"] in held_out.get(e["category"], ())
    }
    for name in ("train", "validation"):
        for example in splits.get(name, []):
            file, row = _origin(example)
            if example["source"] in held_out.get(example["category"], ()):
                got = f"held-out source {example['source']!r} in {name}"
                raise DataError(file, row, "source", "held-out sources in test only", got)
            if (example["category"], example["group"]) in tested:
                got = f"group {example['group']!r} of a held-out source in {name}"
                raise DataError(file, row, "group", "groups of held-out sources in test only", got)


def check_group_leaks(splits: Mapping[str, Sequence[Mapping]]) -> None:
    """Raise when a (category, group) has examples in more than one split.

    Raises:
        DataError: naming the file and row of an example of the leaking group, the field
            ``group`` and the splits it appears in.
    """
    home: dict[tuple[str, str], str] = {}
    for name, examples in splits.items():
        for example in examples:
            key = (example["category"], example["group"])
            first = home.setdefault(key, name)
            if first != name:
                raise _leak_error(example, example["group"], [first, name])
