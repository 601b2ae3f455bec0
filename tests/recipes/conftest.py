"""Fixtures for the recipes tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from recipes_helpers import TOY_CATEGORY, write_yaml


@pytest.fixture
def toy_category_dir(tmp_path):
    """A folder holding ``toy.yaml``; call it with the category's ``sources`` list."""

    def make(sources: list[dict] | None = None, name: str = "toy") -> Path:
        folder = tmp_path / "categories"
        write_yaml(folder / f"{name}.yaml", {**TOY_CATEGORY, "name": name, "sources": sources or []})
        return folder

    return make
