"""``data build`` never deletes what it did not write, and what it writes can be read back."""

from __future__ import annotations

import datasets
import pytest
from recipes_helpers import (
    TOY_SOURCE,
    toy_recipe,
    toy_rows,
    write_csv,
    write_jsonl,
)

from recipes.builders import build_from_file, load_examples
from recipes.schema import FEATURES, DataError, from_arrow_row, to_arrow_row, validate_example


@pytest.fixture
def build(tmp_path, toy_category_dir):
    write_csv(tmp_path / "toy.csv", toy_rows(60, groups=20))
    cats = toy_category_dir([TOY_SOURCE])

    def run(out, **overrides):
        return build_from_file(toy_recipe(tmp_path, **overrides), out, data_root=tmp_path, categories_dirs=[cats])

    return run


def test_a_folder_holding_user_files_is_refused_and_kept(tmp_path, build):
    out = tmp_path / "mine"
    (out / "eval").mkdir(parents=True)
    (out / "eval" / "precious.txt").write_text("keep me", encoding="utf-8")
    (out / "notes.md").write_text("mine", encoding="utf-8")
    with pytest.raises(DataError, match=r"mine: field '--out': expected an empty or new folder"):
        build(out)
    assert (out / "eval" / "precious.txt").read_text(encoding="utf-8") == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["eval", "notes.md"]


def test_a_rebuild_replaces_only_what_the_build_wrote(tmp_path, build):
    out = tmp_path / "out"
    build(out)
    (out / "notes.md").write_text("mine", encoding="utf-8")
    card = build(out, seed=12)
    assert card.seed == 12 and (out / "notes.md").read_text(encoding="utf-8") == "mine"
    assert len(load_examples(out, "test")) == 12


def test_a_rebuild_refuses_a_user_file_inside_the_built_folders(tmp_path, build):
    out = tmp_path / "out"
    build(out)
    (out / "sft" / "train" / "my_labels.csv").write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match=r"my_labels\.csv"):
        build(out)
    assert (out / "sft" / "train" / "my_labels.csv").exists()


def test_an_empty_folder_is_fine(tmp_path, build):
    (tmp_path / "empty").mkdir()
    assert build(tmp_path / "empty").total() == 60


def test_an_empty_split_is_refused_at_build_naming_split_and_category(tmp_path, toy_category_dir):
    write_csv(tmp_path / "toy.csv", toy_rows(2, groups=1))
    cats = toy_category_dir([TOY_SOURCE])
    with pytest.raises(
        DataError, match=r"field 'splits\.validation': expected at least one example in eval/validation.*toy 0"
    ):
        build_from_file(toy_recipe(tmp_path), tmp_path / "out", data_root=tmp_path, categories_dirs=[cats])
    assert not (tmp_path / "out" / "eval").exists()


@pytest.mark.parametrize(
    "prompt",
    ['[{"role": "user", "content": "a text prompt that looks like JSON"}]', '[{"role"', "plain"],
    ids=["json_looking_text", "truncated_json_looking_text", "plain_text"],
)
def test_a_text_prompt_is_read_back_as_text(prompt):
    example = validate_example({"category": "c", "prompt": prompt, "response": "r", "label": 1})
    data = datasets.Dataset.from_list([to_arrow_row(example)], features=FEATURES)
    assert from_arrow_row(data[0]) == example


def test_a_json_looking_text_prompt_survives_a_build(tmp_path, toy_category_dir):
    rows = [
        {"prompt": f'[{{"role": "user", "content": "hi {i}"}}', "response": f"r{i}", "label": i % 2} for i in range(30)
    ]
    write_jsonl(tmp_path / "toy.jsonl", rows)
    columns = {"prompt": "prompt", "response": "response", "label": "label"}
    source = {"name": "toy_csv", "kind": "jsonl", "path": "toy.jsonl", "columns": columns}
    cats = toy_category_dir([source])
    build_from_file(toy_recipe(tmp_path), tmp_path / "out", data_root=tmp_path, categories_dirs=[cats])
    prompts = [
        e["prompt"] for split in ("train", "validation", "test") for e in load_examples(tmp_path / "out", split)
    ]
    assert len(prompts) == 30 and all(isinstance(p, str) and p.startswith('[{"role"') for p in prompts)
