"""Mixtures: one category's rows drawn from several sources, capped per source, deduplicated across them.

Real sources differ in size by two orders of magnitude (22k TruthfulQA answers, 602 HarmBench
ones), so a plain union is one source with some noise. A data recipe caps each source; the cap
keeps each label's share and never splits a group across splits, because splitting happens after
mixing and moves whole groups (see :mod:`recipes.splits`). Two ways to cap:

- ``rows`` (default): rows spread over as many groups as possible (round-robin over the groups in
  a seeded order, per label). GPTFuzz has 77 rows per question: 300 rows as whole groups would be
  four questions; spread they are all 80.
- ``groups``: whole groups in a seeded order, each taken only if the label quotas still have room
  (then any group that still fits), for sources whose groups must stay complete.

Duplicates across sources (the same prompt and response in two sources of one category) are removed
with held-out sources first, so the copy that survives is the held-out one and training never sees
it; how many were removed between which two sources is counted. Everything here is a pure function
of its input and the seed.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from recipes.splits import DedupResult, content_key, dedupe_examples, label_quotas


__all__ = [
    "CAP_MODES",
    "MixReport",
    "MixturePlan",
    "cap_sources",
    "dedupe_across_sources",
    "mix",
    "source_counts",
]

CAP_MODES = ("rows", "groups")


@dataclass(frozen=True)
class MixturePlan:
    """How a recipe mixes its sources: ``caps[category][source]`` rows at most, ``held_out[category]`` sources."""

    caps: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    held_out: Mapping[str, Collection[str]] = field(default_factory=dict)
    cap_by: str = "rows"


@dataclass
class MixReport:
    """What mixing did, per category and source (for the data card)."""

    sources: dict[str, dict[str, dict[str, int | None]]] = field(default_factory=dict)
    across_sources: dict[str, dict[str, int]] = field(default_factory=dict)
    dedup: DedupResult | None = None


def _key(example: Mapping) -> tuple[str, str]:
    return example["category"], example["source"]


def dedupe_across_sources(
    examples: Sequence[dict], held_out: Mapping[str, Collection[str]]
) -> tuple[DedupResult, dict[str, dict[str, int]]]:
    """Remove exact duplicates (category, prompt, response), held-out sources' copies kept first.

    Returns the result of :func:`recipes.splits.dedupe_examples` on the reordered examples and, per
    category, ``{"<removed source> -> <kept source>": n}`` for duplicates whose copies came from two sources.
    """
    ordered = sorted(examples, key=lambda e: e["source"] not in held_out.get(e["category"], ()))
    first: dict[str, str] = {}
    across: dict[str, Counter[str]] = defaultdict(Counter)
    for example in ordered:
        kept = first.setdefault(content_key(example), example["source"])
        if kept != example["source"]:
            across[example["category"]][f"{example['source']} -> {kept}"] += 1
    return dedupe_examples(ordered), {c: dict(n) for c, n in across.items()}


def _groups(items: Sequence[dict], rng: random.Random) -> list[list[dict]]:
    by_group: dict[str, list[dict]] = defaultdict(list)
    for example in sorted(items, key=lambda e: e["id"]):
        by_group[example["group"]].append(example)
    keys = sorted(by_group)
    rng.shuffle(keys)
    for key in keys:
        rng.shuffle(by_group[key])
    return [by_group[key] for key in keys]


def _spread(items: Sequence[dict], cap: int, rng: random.Random) -> list[dict]:
    """``cap`` rows, each label's share kept, taken one per group in turn (most groups survive)."""
    groups = _groups(items, rng)
    quotas = label_quotas(Counter(e["label"] for e in items), cap)
    chosen: list[dict] = []
    for label, quota in sorted(quotas.items()):
        queues = [[e for e in members if e["label"] == label] for members in groups]
        queues = [q for q in queues if q]
        taken = 0
        while taken < quota:
            for queue in queues:
                if queue and taken < quota:
                    chosen.append(queue.pop(0))
                    taken += 1
    return chosen


def _whole_groups(items: Sequence[dict], cap: int, rng: random.Random) -> list[dict]:
    """Whole groups up to ``cap`` rows: first those that keep within each label's quota, then any that fit."""
    groups = _groups(items, rng)
    quotas = label_quotas(Counter(e["label"] for e in items), cap)
    count: Counter[int] = Counter()
    chosen: list[list[dict]] = []
    for strict in (True, False):
        for members in groups:
            if any(members is c for c in chosen):
                continue
            labels = Counter(e["label"] for e in members)
            fits = sum(count.values()) + len(members) <= cap
            within = all(count[lb] + n <= quotas.get(lb, 0) for lb, n in labels.items())
            if fits and (within or not strict):
                chosen.append(members)
                count.update(labels)
    return [e for members in chosen for e in members]


def cap_sources(
    examples: Sequence[dict], caps: Mapping[str, Mapping[str, int]], seed: int, cap_by: str = "rows"
) -> tuple[list[dict], dict[str, dict[str, int]]]:
    """At most ``caps[category][source]`` rows of each source, stratified by label; order kept.

    Returns the kept examples and ``{category: {source: rows dropped}}`` for the sources a cap cut.
    """
    if cap_by not in CAP_MODES:
        raise ValueError(f"cap_by must be one of {CAP_MODES}, got {cap_by!r}")
    by_source: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for example in examples:
        by_source[_key(example)].append(example)
    keep: set[int] = set()
    dropped: dict[str, dict[str, int]] = defaultdict(dict)
    for (category, source), items in by_source.items():
        cap = caps.get(category, {}).get(source)
        if cap is None or len(items) <= cap:
            keep.update(id(e) for e in items)
            continue
        rng = random.Random(f"{seed}:{category}:{source}:cap")
        chosen = (_spread if cap_by == "rows" else _whole_groups)(items, cap, rng)
        keep.update(id(e) for e in chosen)
        dropped[category][source] = len(items) - len(chosen)
    return [e for e in examples if id(e) in keep], dict(dropped)


def _tally(examples: Sequence[dict]) -> dict[tuple[str, str], tuple[int, int, int]]:
    rows: Counter[tuple[str, str]] = Counter()
    positives: Counter[tuple[str, str]] = Counter()
    groups: dict[tuple[str, str], set[str]] = defaultdict(set)
    for example in examples:
        rows[_key(example)] += 1
        positives[_key(example)] += example["label"]
        groups[_key(example)].add(example["group"])
    return {key: (rows[key], positives[key], len(groups[key])) for key in rows}


def mix(examples: Sequence[dict], plan: MixturePlan, seed: int) -> tuple[list[dict], MixReport]:
    """Deduplicate across sources (held-out copies first), then cap each source.

    Returns the mixed examples and a report: per category and source the rows loaded, left after
    deduplication, kept after the cap (with positives and groups), the cap and whether it is held out.
    """
    loaded = _tally(examples)
    dedup, across = dedupe_across_sources(examples, plan.held_out)
    deduped = _tally(dedup.examples)
    capped, _ = cap_sources(dedup.examples, plan.caps, seed, plan.cap_by)
    kept = _tally(capped)
    report = MixReport(across_sources=across, dedup=dedup)
    for key in loaded:
        category, source = key
        rows, positives, groups = kept.get(key, (0, 0, 0))
        report.sources.setdefault(category, {})[source] = {
            "loaded": loaded[key][0],
            "after_dedupe": deduped.get(key, (0, 0, 0))[0],
            "cap": plan.caps.get(category, {}).get(source),
            "kept": rows,
            "positives": positives,
            "groups": groups,
            "held_out": int(source in plan.held_out.get(category, ())),
        }
    return capped, report


def source_counts(splits: Mapping[str, Sequence[dict]]) -> dict[str, dict[str, dict[str, dict[str, int]]]]:
    """``{category: {source: {split: {"1": n, "0": n}}}}`` of built splits (the data card's source table)."""
    counts: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    for split, examples in splits.items():
        for example in examples:
            per_split = counts.setdefault(example["category"], {}).setdefault(example["source"], {})
            per_label = per_split.setdefault(split, {"1": 0, "0": 0})
            per_label[str(example["label"])] += 1
    return counts
