"""Builders: data recipes, the evaluation and SFT data sets, the data card, bad recipes."""

from __future__ import annotations

import json

import datasets
import pytest
import yaml
from recipes_helpers import TOY_COLUMNS, TOY_SOURCE, toy_recipe, toy_rows, write_csv, write_yaml

from recipes.builders import (
    DataCard,
    DataRecipe,
    build_datasets,
    build_from_file,
    load_data_recipe,
    load_examples,
    sample_exemplars,
)
from recipes.schema import DataError
from recipes.verdict import parse_verdict


@pytest.fixture
def toy(tmp_path, toy_category_dir):
    """(data root, categories dir) with 60 rows in 20 groups."""
    write_csv(tmp_path / "toy.csv", toy_rows(60, groups=20))
    return tmp_path, toy_category_dir([TOY_SOURCE])


def _build(recipe_path, toy, **kwargs):
    root, cats = toy
    return build_datasets(load_data_recipe(recipe_path), data_root=root, categories_dirs=[cats], **kwargs)


def test_build_writes_eval_sft_card_and_resolved_recipe(tmp_path, toy):
    root, cats = toy
    out = tmp_path / "out"
    card = build_from_file(toy_recipe(tmp_path), out, data_root=root, categories_dirs=[cats])
    assert {p.name for p in out.iterdir()} == {"eval", "sft", "data_card.json", "data_card.md", "recipe.yaml"}
    evaluation = datasets.load_from_disk(str(out / "eval"))
    assert list(evaluation) == ["train", "validation", "test"]
    assert sum(len(evaluation[s]) for s in evaluation) == 60 == card.total()
    assert card.counts["toy"]["train"] == {"1": 18, "0": 18}
    sft = datasets.load_from_disk(str(out / "sft"))
    assert list(sft) == ["train", "validation"] and len(sft["train"]) == len(evaluation["train"])
    assert DataCard.read(out).to_dict() == card.to_dict()
    assert "| toy | 1 | 18 | 6 | 6 | 30 |" in (out / "data_card.md").read_text()
    # the resolved recipe builds again on its own, to the same hash
    resolved = yaml.safe_load((out / "recipe.yaml").read_text())
    assert resolved["categories"][0]["sources"][0]["path"] == "toy.csv"
    again = build_from_file(out / "recipe.yaml", tmp_path / "again", data_root=root, categories_dirs=[cats])
    assert again.recipe_hash == card.recipe_hash
    assert json.loads((out / "data_card.json").read_text())["recipe_hash"] == card.recipe_hash


def test_sft_rows_are_conversations_with_the_verdict_as_assistant_turn(tmp_path, toy):
    built = _build(toy_recipe(tmp_path), toy)
    row = built.sft["train"][0]
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    assert set(row) == {"messages", "id", "category", "label"}
    assert parse_verdict(row["messages"][2]["content"], "BAD", "FINE").label == row["label"]
    assert json.loads(row["messages"][2]["content"]) == {"verdict": "BAD" if row["label"] else "FINE"}
    example = next(e for e in built.splits["train"] if e["id"] == row["id"])
    assert example["response"] in row["messages"][1]["content"]
    assert "Did the assistant do the bad thing?" in row["messages"][0]["content"]


def test_same_recipe_built_twice_gives_identical_splits(tmp_path, toy):
    first, second = _build(toy_recipe(tmp_path), toy), _build(toy_recipe(tmp_path), toy)
    for split in ("train", "validation", "test"):
        assert first.eval[split].to_list() == second.eval[split].to_list()
    assert first.sft["train"].to_list() == second.sft["train"].to_list()
    assert first.card.to_dict() == second.card.to_dict()
    other_seed = _build(toy_recipe(tmp_path, seed=12), toy)
    assert other_seed.eval["test"]["id"] != first.eval["test"]["id"]
    assert other_seed.card.recipe_hash != first.card.recipe_hash


def test_no_group_in_two_splits(tmp_path, toy):
    built = _build(toy_recipe(tmp_path), toy)
    homes = {}
    for split, rows in built.splits.items():
        for example in rows:
            assert homes.setdefault(example["group"], split) == split


def test_skip_counts_bad_rows_in_the_card(tmp_path, toy):
    root, _ = toy
    rows = toy_rows(60, groups=20)
    rows[3]["verdict"], rows[7]["a"], rows[9]["verdict"] = "unsure", "", "??"
    write_csv(root / "toy.csv", rows)
    with pytest.raises(DataError, match=r"toy\.csv:4: field 'label'"):
        _build(toy_recipe(tmp_path), toy)
    out = tmp_path / "skipped"
    card = build_from_file(toy_recipe(tmp_path), out, data_root=root, on_bad_row="skip", categories_dirs=[toy[1]])
    assert card.total() == 57
    assert card.skipped["total"] == 3
    assert sum(card.skipped["reasons"].values()) == 3
    assert card.sources["toy"][0]["skipped"] == 3 and card.sources["toy"][0]["rows_read"] == 60
    assert any(":8: field 'response'" in row for row in card.skipped["rows"])
    assert "Skipped rows: 3" in (out / "data_card.md").read_text()


def test_duplicates_are_removed_and_counted_in_the_card(tmp_path, toy):
    root, _ = toy
    rows = toy_rows(60, groups=20)
    write_csv(root / "toy.csv", rows + rows[:5])
    built = _build(toy_recipe(tmp_path), toy)
    assert built.card.total() == 60 and built.card.duplicates_removed == {"toy": 5}


def test_repeated_id_with_other_content_is_an_error_naming_both_rows(tmp_path, toy):
    root, cats = toy
    write_csv(
        root / "ids.csv",
        [
            {"k": "same", "q": "p1", "a": "r1", "verdict": "yes", "topic": "t"},
            {"k": "same", "q": "p2", "a": "r2", "verdict": "no", "topic": "u"},
        ],
    )
    inline = {**TOY_SOURCE, "name": "ids", "path": "ids.csv", "columns": {**TOY_COLUMNS, "id": "k"}}
    with pytest.raises(DataError, match=r"ids\.csv:2: field 'id': expected a unique id \(also used at ids\.csv:1\)"):
        _build(toy_recipe(tmp_path, categories=[{"name": "toy", "sources": [inline]}]), toy)


def test_inline_sources_and_limit_per_category(tmp_path, toy):
    inline = {**TOY_SOURCE, "name": "inline"}
    built = _build(toy_recipe(tmp_path, categories=[{"name": "toy", "sources": [inline]}], limit_per_category=20), toy)
    assert built.card.total() == 20 and built.card.subsampled == {"toy": 40}
    assert built.card.total(label=1) == 10
    assert built.card.sources["toy"][0]["name"] == "inline"


def test_bare_category_name_uses_its_first_source(tmp_path, toy):
    built = _build(toy_recipe(tmp_path, categories=["toy"]), toy)
    assert built.card.sources["toy"][0]["name"] == "toy_csv"


def test_category_with_no_sources_is_an_error(tmp_path, toy_category_dir):
    cats = toy_category_dir([], name="empty")
    recipe = toy_recipe(tmp_path, categories=[{"name": "empty"}])
    with pytest.raises(DataError) as caught:
        build_datasets(load_data_recipe(recipe), categories_dirs=[cats])
    assert str(caught.value).startswith(f"{recipe}:categories[0]: field 'sources': expected at least one source")
    assert "empty.yaml has none" in str(caught.value)


def test_unknown_source_name_lists_the_known_ones(tmp_path, toy):
    recipe = toy_recipe(tmp_path, categories=[{"name": "toy", "sources": ["nope"]}])
    with pytest.raises(DataError, match=r"categories\[0\]\.sources\[0\]: field 'sources': expected a source of toy"):
        _build(recipe, toy)


@pytest.mark.parametrize(
    ("overrides", "field_name"),
    [
        pytest.param({"epochs": 3}, "epochs", id="unknown_key"),
        pytest.param({"splits": {"train": 0.5, "validation": 0.2, "test": 0.2}}, "splits", id="fractions_sum"),
        pytest.param({"splits": {"train": 0.8, "dev": 0.2}}, "splits.dev", id="unknown_split"),
        pytest.param({"budget": {"prompt_tokens": 5}}, "budget.prompt_tokens", id="unknown_budget_key"),
        pytest.param(
            {"budget": {"categories": {"nope": {"response_chars": 5}}}},
            "budget.categories.nope",
            id="budget_of_no_category",
        ),
        pytest.param(
            {"budget": {"categories": {"toy": {"response_char": 5}}}},
            "budget.categories.toy.response_char",
            id="unknown_category_budget_key",
        ),
        pytest.param({"budget": {"head_fraction": 1.5}}, "budget.head_fraction", id="head_fraction_over_one"),
        pytest.param({"limit_per_category": 0}, "limit_per_category", id="zero_limit"),
        pytest.param({"seed": "forty-two"}, "seed", id="seed_not_int"),
        pytest.param({"categories": [{"name": "toy", "weight": 2}]}, "weight", id="unknown_category_key"),
        pytest.param({"categories": ["toy", "toy"]}, "categories", id="repeated_category"),
    ],
)
def test_bad_recipe_names_file_and_field(tmp_path, overrides, field_name):
    recipe = toy_recipe(tmp_path, **overrides)
    with pytest.raises(DataError) as caught:
        load_data_recipe(recipe)
    assert str(caught.value).startswith(recipe) and f"field '{field_name}'" in str(caught.value)


@pytest.mark.parametrize("template", ["cot", "score"])
def test_sft_needs_a_verdict_first_template(tmp_path, toy, template):
    with pytest.raises(DataError, match="field 'prompt_template': expected a verdict-first template"):
        _build(toy_recipe(tmp_path, prompt_template=template), toy)


def test_load_examples_decodes_the_eval_split(tmp_path, toy):
    root, cats = toy
    build_from_file(toy_recipe(tmp_path), tmp_path / "out", data_root=root, categories_dirs=[cats])
    test = load_examples(tmp_path / "out", "test")
    assert len(test) == 12 and isinstance(test[0]["meta"], dict) and isinstance(test[0]["context"], dict)
    assert test[0]["meta"]["origin"].startswith("toy.csv:")
    with pytest.raises(DataError, match="field 'split'"):
        load_examples(tmp_path / "out", "dev")
    with pytest.raises(DataError, match="field 'eval'"):
        load_examples(tmp_path / "nowhere", "test")


def test_sample_exemplars_balanced_deterministic_and_from_the_given_examples():
    train = [
        {"id": f"e{i}", "category": "toy", "label": i % 3 == 0, "meta": {"explanation": f"x{i}"}} for i in range(30)
    ]
    train = [{**e, "label": int(e["label"])} for e in train]
    chosen = sample_exemplars(train, "toy", 4, seed=1)
    assert [e["label"] for e in chosen] == [1, 0, 1, 0]
    assert chosen == sample_exemplars(train, "toy", 4, seed=1)
    assert all(e["explanation"] == e["meta"]["explanation"] for e in chosen)
    assert {e["id"] for e in chosen} <= {e["id"] for e in train}
    only_negatives = [e for e in train if e["label"] == 0]
    assert [e["label"] for e in sample_exemplars(only_negatives, "toy", 3, seed=1)] == [0, 0, 0]
    assert sample_exemplars(train, "other", 4, seed=1) == [] and sample_exemplars(train, "toy", 0, 1) == []


def test_recipe_dataclass_can_be_built_in_code(tmp_path, toy):
    root, cats = toy
    recipe = DataRecipe(
        name="code", categories=[{"name": "toy"}], splits={"train": 0.5, "validation": 0.25, "test": 0.25}
    )
    built = build_datasets(recipe, data_root=root, categories_dirs=[cats])
    assert built.card.total("train") == 30


def test_recipe_without_splits_uses_the_defaults(tmp_path):
    path = write_yaml(tmp_path / "r.yaml", {"name": "r", "categories": ["jailbreak"]})
    assert load_data_recipe(path).splits.as_dict() == {"train": 0.8, "validation": 0.1, "test": 0.1}


def test_group_leaking_across_pinned_sources_names_file_row_and_field(tmp_path, toy):
    root, _ = toy
    write_csv(root / "extra.csv", [{"q": "another prompt", "a": "another answer", "verdict": "no", "topic": "t3"}])
    held_out = {**TOY_SOURCE, "name": "held_out", "path": "extra.csv", "assign_split": "test"}
    trained = {**TOY_SOURCE, "assign_split": "train"}
    recipe = toy_recipe(tmp_path, categories=[{"name": "toy", "sources": [trained, held_out]}])
    with pytest.raises(DataError) as caught:
        _build(recipe, toy)
    message = str(caught.value)
    assert message.startswith("toy.csv:4: field 'group': expected every example of a group in one split")
    assert "group 't3' of category 'toy' in test and train" in message


def test_pinned_source_lands_whole_in_its_split(tmp_path, toy):
    root, _ = toy
    write_csv(
        root / "extra.csv", [{"q": f"held {i}", "a": f"out {i}", "verdict": "no", "topic": f"h{i}"} for i in range(5)]
    )
    held_out = {**TOY_SOURCE, "name": "held_out", "path": "extra.csv", "assign_split": "test"}
    built = _build(toy_recipe(tmp_path, categories=[{"name": "toy", "sources": ["toy_csv", held_out]}]), toy)
    assert not any(e["source"] == "held_out" for split in ("train", "validation") for e in built.splits[split])
    assert sum(e["source"] == "held_out" for e in built.splits["test"]) == 5
