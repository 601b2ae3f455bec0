"""``judgeforge recipe keys KIND``: the dataclass behind each recipe kind, for :func:`recipes.loader.describe`."""

from __future__ import annotations

from collections.abc import Callable

from recipes.loader import describe


__all__ = ["RECIPE_KINDS", "describe"]


def _run() -> type:
    from evaluation.run_recipe import RunRecipe

    return RunRecipe


def _data() -> type:
    from recipes.data_recipe import DataRecipe

    return DataRecipe


def _job() -> type:
    from judgeforge.pipeline import JobRecipe

    return JobRecipe


def _source() -> type:
    from recipes.sources import SourceConfig

    return SourceConfig


RECIPE_KINDS: dict[str, Callable[[], type]] = {"run": _run, "data": _data, "job": _job, "source": _source}
