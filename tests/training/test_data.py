import json
import shutil
from pathlib import Path

import datasets
import pytest

from recipes.schema import DataError
from training.data import fixed_subset, load_sft_data


def test_loads_sft_set_with_card_and_verdict_words(sft_dir):
    data = load_sft_data(sft_dir)
    assert len(data.train) == 24 and len(data.validation) == 12
    assert data.card["recipe_hash"] == "fixture0123456789" and data.card["prompt_template"] == "basic"
    assert data.verdict_words == {"jailbreak": ["JAILBROKEN", "SAFE"]}


def test_category_filter_and_train_subsample(make_sft_dir):
    folder = make_sft_dir(categories=("jailbreak", "malware"), n_train=40)
    data = load_sft_data(folder, categories=["malware"])
    assert set(data.train["category"]) == {"malware"} and data.categories == ["malware"]
    small = load_sft_data(folder, train_rows=10, seed=1)
    assert len(small.train) == 10
    assert sorted(set(small.train["category"])) == ["jailbreak", "malware"]
    assert small.train["id"] == load_sft_data(folder, train_rows=10, seed=1).train["id"]


@pytest.mark.parametrize(
    ("breakage", "field"),
    [
        pytest.param("no_folder", "data_dir", id="missing_folder"),
        pytest.param("no_card", "data_card.json", id="missing_data_card"),
        pytest.param("eval_only", "sft", id="evaluation_set_not_sft"),
        pytest.param("no_validation", "split", id="missing_validation_split"),
        pytest.param("no_messages", "messages", id="missing_messages_column"),
        pytest.param("bad_roles", "messages", id="conversation_without_system_turn"),
    ],
)
def test_not_a_judgeforge_sft_set_is_a_clear_error(make_sft_dir, tmp_path, breakage, field):
    folder = make_sft_dir()
    sft = datasets.load_from_disk(str(folder / "sft"), keep_in_memory=True)
    if breakage == "no_folder":
        folder = tmp_path / "nowhere"
    elif breakage == "no_card":
        (folder / "data_card.json").unlink()
    elif breakage == "eval_only":
        shutil.move(str(folder / "sft"), str(folder / "eval"))
    elif breakage in ("no_validation", "no_messages", "bad_roles"):
        if breakage == "no_validation":
            sft = datasets.DatasetDict({"train": sft["train"]})
        elif breakage == "no_messages":
            sft = sft.rename_column("messages", "conversation")
        else:
            sft = sft.map(lambda row: {"messages": row["messages"][1:]})
        shutil.rmtree(folder / "sft")
        sft.save_to_disk(str(folder / "sft"))
    with pytest.raises(DataError, match=f"field '{field}'") as error:
        load_sft_data(folder)
    assert str(folder) in str(error.value)


def test_card_without_recipe_hash_is_rejected(make_sft_dir):
    folder = make_sft_dir()
    (folder / "data_card.json").write_text(json.dumps({"prompt_template": "basic"}), encoding="utf-8")
    with pytest.raises(DataError, match="field 'recipe_hash'"):
        load_sft_data(folder)


def test_unknown_category_names_the_ones_present(sft_dir):
    with pytest.raises(DataError, match="field 'categories'.*jailbreak.*malwar"):
        load_sft_data(sft_dir, categories=["malwar"])


def test_fixed_subset_is_deterministic_and_round_robin():
    categories = ["a"] * 10 + ["b"] * 3 + ["c"] * 7
    first = fixed_subset(categories, 9, seed=3)
    assert first == fixed_subset(categories, 9, seed=3) and first == sorted(first)
    assert [categories[i] for i in first].count("b") == 3
    assert fixed_subset(categories, 9, seed=4) != first
    assert fixed_subset(categories, 100, seed=0) == list(range(20))


def test_a_missing_data_dir_names_the_build_command(tmp_path):
    from training.data import ensure_data_dir

    missing = tmp_path / "data" / "quickstart"
    with pytest.raises(DataError, match=r"field 'data_dir': .*run `judgeforge data build RECIPE --out .*quickstart`"):
        ensure_data_dir(missing, None)
    assert not missing.exists()


def test_a_missing_data_dir_is_built_from_the_configs_data_recipe(tmp_path):
    from training.data import ensure_data_dir, load_sft_data

    root = Path(__file__).resolve().parents[2]
    target = tmp_path / "built"
    ensure_data_dir(target, str(root / "recipes" / "data" / "quickstart.yaml"))
    data = load_sft_data(target)
    assert len(data.train) > 0 and len(data.validation) > 0
    # An existing folder is never rebuilt or touched, whatever the recipe says.
    stamp = (target / "data_card.json").stat().st_mtime_ns
    ensure_data_dir(target, "no/such/recipe.yaml")
    assert (target / "data_card.json").stat().st_mtime_ns == stamp
