"""Consistency training: a perturbed copy of a training row must get the row's own verdict.

Augmented rows (:mod:`recipes.augment`) teach a judge the right label under an attack, but the flip
rate measures something else: whether the copy gets the *same* verdict as its clean row. A judge that
is right three times in four on both can still disagree with itself on a fifth of the pairs, and it
did (the robust quickstart judge: F1 under the evaluator note level with its clean F1, 19% of its
verdicts flipped). With ``consistency_weight`` > 0:

- :class:`PairedSampler` orders each epoch so that a clean row and its copy share a batch;
- :class:`GroupCollator` turns the rows' ids into group numbers (a copy's id is its clean id plus
  the attack, :func:`recipes.attacks.attacked_id`);
- :func:`consistency_penalty` is added to TRL's loss: the weight times the mean, over the groups
  in the batch, of the spread of P(verdict word) across a row and its copies. A copy keeps its row's
  label, so the word is the same one; this is logit pairing on the verdict.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from recipes.attacks import ATTACK_SEPARATOR


__all__ = ["GROUP_KEY", "GroupCollator", "PairedSampler", "clean_key", "consistency_penalty"]

GROUP_KEY = "consistency_groups"


def clean_key(row_id: str) -> str:
    """The clean row's id of a row (a clean row is its own key)."""
    return str(row_id).split(ATTACK_SEPARATOR, 1)[0]


class PairedSampler(torch.utils.data.Sampler[int]):
    """Every row once an epoch, in a seeded random order of two-row units that never straddle a batch.

    Rows of one clean key are cut into pairs; rows left over (a clean row without a copy, the odd
    copy) are paired with one another. With an even batch size, positions 2k and 2k + 1 share a
    batch, so each pair is in one forward pass; at most one unit (the last) has one row.
    """

    def __init__(self, ids: Sequence[str], seed: int):
        self.groups: dict[str, list[int]] = {}
        for index, row_id in enumerate(ids):
            self.groups.setdefault(clean_key(row_id), []).append(index)
        self.seed = seed
        self.epoch = 0
        self.rows = len(ids)

    def set_epoch(self, epoch: int) -> None:
        """Called by accelerate's data loader before each epoch (and on resume), so the order depends on it alone."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.rows

    def order(self, epoch: int) -> list[int]:
        """The epoch's row order (deterministic for the ids, the seed and the epoch)."""
        rng = random.Random(f"{self.seed}:{epoch}:pairs")
        units: list[list[int]] = []
        loose: list[int] = []
        for key in sorted(self.groups):
            rows = list(self.groups[key])
            rng.shuffle(rows)
            units.extend(rows[i : i + 2] for i in range(0, len(rows) - 1, 2))
            if len(rows) % 2:
                loose.append(rows[-1])
        rng.shuffle(loose)
        units.extend(loose[i : i + 2] for i in range(0, len(loose), 2))
        last = [units.pop()] if units and len(units[-1]) == 1 else []
        rng.shuffle(units)
        return [row for unit in [*units, *last] for row in unit]

    def __iter__(self) -> Iterator[int]:
        order = self.order(self.epoch)
        self.epoch += 1
        return iter(order)


class GroupCollator:
    """Wraps a collator: removes each example's ``id`` and adds ``consistency_groups`` to the batch.

    A row's group is the batch-local number of its clean key when another row of the batch has the
    same key, else -1 (no penalty for it).
    """

    def __init__(self, collator: Callable[[list], dict]):
        self.collator = collator

    def __call__(self, examples: list[dict[str, Any]]) -> dict:
        """TRL's batch of the examples without their ids, plus the group of each row."""
        if not all("id" in example for example in examples):
            return self.collator(examples)  # evaluation rows carry no id: no groups, no penalty
        keys = [clean_key(example["id"]) for example in examples]
        batch = self.collator([{k: v for k, v in example.items() if k != "id"} for example in examples])
        numbers: dict[str, int] = {}
        groups = []
        for key in keys:
            if keys.count(key) > 1:
                groups.append(numbers.setdefault(key, len(numbers)))
            else:
                groups.append(-1)
        batch[GROUP_KEY] = torch.tensor(groups, dtype=torch.long)
        return batch


def consistency_penalty(log_probs: torch.Tensor, label_mask: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Mean over the batch's groups of the summed squared deviation of P(verdict) from the group mean.

    For a pair that is half the squared difference of the two probabilities. ``log_probs`` holds the
    labelled tokens' log-probabilities (zero elsewhere), as TRL's fused head returns them; with the
    loss on the verdict token alone a row's sum is its verdict word's log-probability.
    """
    groups = groups.to(log_probs.device)
    grouped = groups >= 0
    if not bool(grouped.any()):
        return log_probs.sum() * 0.0
    row_log_prob = (log_probs * label_mask).sum(dim=1)
    p = row_log_prob[grouped].exp()
    g = groups[grouped]
    n_groups = int(g.max()) + 1
    counts = torch.zeros(n_groups, dtype=p.dtype, device=p.device).index_add_(0, g, torch.ones_like(p))
    means = torch.zeros(n_groups, dtype=p.dtype, device=p.device).index_add_(0, g, p) / counts
    spread = torch.zeros(n_groups, dtype=p.dtype, device=p.device).index_add_(0, g, (p - means[g]) ** 2)
    return spread[counts > 1].mean()
