"""Training that resists attacks on the judge: perturbed copies of training rows, labels unchanged.

A data recipe's ``augment`` section adds, to the SFT training set only, copies of training rows
under victim-side attacks (:mod:`recipes.attacks`)::

    augment: {attacks: [evaluator_note, fake_verdict, padding:1], fraction: 0.3, seed: 0}

``fraction`` x the number of training rows copies are made (more than 1 gives some rows several
copies, each under a different attack variant). Copies keep the clean row's label and group, so a
judge learns that a note, an order or a verdict word inside the transcript is no evidence. The
validation and test splits and the evaluation data set (which the few-shot exemplars and the
reference judges read) stay clean. The data card counts the copies per attack.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from recipes.attacks import PERTURBATION, apply_attack, attack_variants, parse_attack_names
from recipes.categories import Category
from recipes.schema import DataError


__all__ = ["AugmentConfig", "augment_examples", "parse_augment"]

_KEYS = ("attacks", "fraction", "seed")


@dataclass(frozen=True)
class AugmentConfig:
    """Which attacks to add to the training rows, how many copies, and the seed of every choice."""

    attacks: tuple[str, ...] = field(metadata={"help": "attack names (every variant) or name:variant"})
    fraction: float = field(default=0.3, metadata={"help": "copies per training row (0.3 = 30% more rows)"})
    seed: int = field(default=0, metadata={"help": "seed of the row, attack and filler choices"})

    def to_dict(self) -> dict[str, Any]:
        """The section as YAML-ready data."""
        return {"attacks": list(self.attacks), "fraction": self.fraction, "seed": self.seed}


def parse_augment(data: Any, where: str) -> AugmentConfig | None:
    """Parse a recipe's ``augment`` section (None or ``false``: no augmentation).

    Raises:
        DataError: naming the recipe and the key that is wrong.
    """
    if data is None or data is False:
        return None
    if not isinstance(data, Mapping):
        raise DataError(where, None, "augment", "a mapping {attacks: [...], fraction: f, seed: n} or false", data)
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise DataError(where, None, f"augment.{unknown[0]}", f"one of {list(_KEYS)}", unknown[0])
    parse_attack_names(data.get("attacks"), where, "augment.attacks")
    fraction = data.get("fraction", 0.3)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 10:
        raise DataError(where, None, "augment.fraction", "a number in (0, 10]", fraction)
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(where, None, "augment.seed", "an integer", seed)
    return AugmentConfig(tuple(str(a) for a in data["attacks"]), float(fraction), seed)


def augment_examples(
    rows: Sequence[Mapping[str, Any]], categories: Mapping[str, Category], config: AugmentConfig
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Perturbed copies of ``rows`` (deterministic for the rows and the seed) and their count per attack.

    Rows are visited in a shuffled order and the (attack, variant) pairs in a shuffled cycle, so the
    attacks are used about equally; no row gets the same pair twice.
    """
    pairs = attack_variants(parse_attack_names(list(config.attacks), "<augment>", "attacks"))
    ordered = sorted(rows, key=lambda r: str(r["id"]))
    if not ordered:
        return [], {}
    rng = random.Random(f"{config.seed}:augment")
    rng.shuffle(ordered)
    rng.shuffle(pairs)
    wanted = min(math.floor(config.fraction * len(ordered) + 0.5), len(ordered) * len(pairs))
    copies = []
    for step in range(wanted):
        # Pass k over the rows shifts the cycle of pairs by k: row i gets pair i + k, never twice.
        index, rotation = step % len(ordered), step // len(ordered)
        name, variant = pairs[(index + rotation) % len(pairs)]
        row = ordered[index]
        copies.append(apply_attack(row, categories[row["category"]], name, variant, config.seed))
    counts = Counter(c["meta"][PERTURBATION]["attack"] for c in copies)
    return copies, dict(sorted(counts.items()))
