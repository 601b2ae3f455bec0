"""Every category file, template and data recipe in the repository loads (and its sources parse)."""

from __future__ import annotations

from pathlib import Path

import pytest
from recipes_helpers import CURATED

from recipes.builders import load_data_recipe
from recipes.categories import BUILTIN_DIR, list_categories, load_category
from recipes.prompts import TEMPLATE_DIR, load_template
from recipes.sources import KINDS, parse_source


DATA_RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes" / "data").glob("*.yaml"))


def test_the_eight_curated_categories_exist():
    assert set(list_categories()) >= CURATED


@pytest.mark.parametrize("path", sorted(BUILTIN_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_category_file_loads_and_its_sources_parse(path):
    category = load_category(path.stem)
    assert category.positive != category.negative and category.criteria
    assert category.sources, f"{path.name} lists no sources"
    assert category.sources[0]["name"] == "embedded"
    for i, mapping in enumerate(category.sources):
        assert parse_source(mapping, origin=str(path), where=f"sources[{i}]").kind in KINDS


def test_real_data_sources_are_named_in_their_categories():
    names = {c: {s["name"] for s in load_category(c).sources} for c in ("jailbreak", "hallucination", "over_refusal")}
    assert "gptfuzz" in names["jailbreak"]
    assert {"halueval", "halueval_hub"} <= names["hallucination"]
    assert {"xstest", "xstest_hub"} <= names["over_refusal"]


@pytest.mark.parametrize("path", sorted(TEMPLATE_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_template_file_loads(path):
    assert load_template(path.stem).name == path.stem


def test_data_recipes_exist():
    assert {p.stem for p in DATA_RECIPES} >= {"quickstart", "gptfuzz", "halueval", "xstest"}


@pytest.mark.parametrize("path", DATA_RECIPES, ids=lambda p: p.stem)
def test_data_recipe_loads_and_names_known_sources(path):
    recipe = load_data_recipe(path)
    for selection in recipe.categories:
        known = {s["name"] for s in load_category(selection.name).sources}
        for source in selection.sources:
            assert isinstance(source, dict) or source in known, f"{path.name}: {selection.name} has no {source}"


def test_quickstart_covers_all_eight_categories_from_embedded_data():
    recipe = load_data_recipe(next(p for p in DATA_RECIPES if p.stem == "quickstart"))
    assert {c.name for c in recipe.categories} == CURATED
    assert all(c.sources == ["embedded"] for c in recipe.categories)
    assert (recipe.splits.train, recipe.splits.validation, recipe.splits.test, recipe.seed) == (0.6, 0.2, 0.2, 42)
    assert recipe.prompt_template == "basic"
