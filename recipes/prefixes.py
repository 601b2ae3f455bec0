"""Runs of token sequences that share leading tokens: what a prefix cache computes once.

Shared by the evaluation engine (a prefix of judge prompts, computed once per call) and the
training's frozen-layer cache (the same, through the frozen layers), so both group rows alike.
"""

from __future__ import annotations

from collections.abc import Sequence


__all__ = ["common_prefix", "shared_runs"]


def common_prefix(a: Sequence[int], b: Sequence[int], start: int = 0) -> int:
    """How many leading tokens ``a`` and ``b`` share (``start``: known to share at least that many)."""
    n = start
    for x, y in zip(a[start:], b[start:]):
        if x != y:
            break
        n += 1
    return n


def shared_runs(
    ids: Sequence[Sequence[int]], indices: Sequence[int], start: int, min_shared: int, min_saved: int = 0
) -> list[tuple[list[int], int]]:
    """Split rows that share ``ids[:start]`` into runs sharing at least ``min_shared`` more tokens.

    A run whose shared part saves fewer than ``min_saved`` token computations is not shared.

    Returns ``(row indices, shared length)`` per run, in token order; a row that shares nothing
    more is a run of its own with length ``start``. A shared length leaves every row at least one
    token of its own.
    """
    order = sorted(indices, key=lambda i: ids[i][start:])
    runs: list[list[int]] = []
    for i in order:
        if runs and common_prefix(ids[runs[-1][0]], ids[i], start) >= start + min_shared:
            runs[-1].append(i)
        else:
            runs.append([i])
    out = []
    for run in runs:
        # Sorted ids: the first and last rows of a run share the least.
        shared = min(common_prefix(ids[run[0]], ids[run[-1]], start), min(len(ids[i]) for i in run) - 1)
        worth = len(run) > 1 and shared >= start + min_shared and (len(run) - 1) * (shared - start) >= min_saved
        out.append((run, shared if worth else start))
    return out
