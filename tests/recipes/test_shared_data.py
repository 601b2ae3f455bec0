"""The real human-labelled data in ../shared/data (skipped cleanly when absent)."""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

from recipes.builders import BuiltData, build_datasets, load_data_recipe
from recipes.categories import load_category
from recipes.sources import load_source, parse_source


RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "data"


@functools.cache
def _build(name: str, root: str) -> BuiltData:
    return build_datasets(load_data_recipe(RECIPES / f"{name}.yaml"), data_root=root)


def _load(category: str, source: str, root: Path):
    mapping = next(s for s in load_category(category).sources if s["name"] == source)
    return load_source(parse_source(mapping), category, data_root=root)


def _split_of_each_group(built: BuiltData) -> dict[str, set[str]]:
    homes: dict[str, set[str]] = {}
    for split, examples in built.splits.items():
        for example in examples:
            homes.setdefault(example["group"], set()).add(split)
    return homes


def test_gptfuzz_rebuilds_6160_attack_prompts_with_1694_positives(shared_data):
    built = _build("gptfuzz", str(shared_data))
    examples = [e for rows in built.splits.values() for e in rows]
    assert len(examples) == 6160 and sum(e["label"] for e in examples) == 1694
    assert built.card.total() == 6160 and built.card.total(label=1) == 1694
    assert built.card.duplicates_removed == {} and built.card.skipped["total"] == 0
    assert not any("[INSERT PROMPT HERE]" in e["prompt"] for e in examples)
    assert all(e["meta"]["question"] in e["prompt"] for e in examples)
    assert len({e["prompt"] for e in examples}) == 6160  # 80 questions x 77 templates, all distinct
    assert Counter(e["meta"]["template_id"] for e in examples) == dict.fromkeys(range(77), 80)


def test_gptfuzz_no_question_in_two_splits(shared_data):
    built = _build("gptfuzz", str(shared_data))
    homes = _split_of_each_group(built)
    assert len(homes) == 80 and all(len(splits) == 1 for splits in homes.values())
    assert Counter(next(iter(s)) for s in homes.values()) == {"train": 48, "validation": 16, "test": 16}


def test_xstest_over_refusal_750_answers_to_safe_prompts_244_refusals(shared_data):
    loaded = _load("over_refusal", "xstest", shared_data)
    assert len(loaded.examples) == 750 and sum(e["label"] for e in loaded.examples) == 244
    assert loaded.report.rows_read == 1350 and loaded.report.filtered == 600
    assert not any(e["meta"]["type"].startswith("contrast_") for e in loaded.examples)
    assert all(len(e["annotations"]) == 2 for e in loaded.examples)
    assert any(e["meta"]["agreement"] == 0.5 for e in loaded.examples)
    by_model = Counter(
        e["meta"]["origin"].split("completions_")[1].split(".csv")[0] for e in loaded.examples if e["label"]
    )
    assert by_model == {"gpt4": 21, "llama2new": 74, "llama2orig": 149}


def test_xstest_build_drops_two_exact_duplicates_and_keeps_prompts_together(shared_data):
    built = _build("xstest", str(shared_data))
    # llama2new and llama2orig gave word-for-word the same compliant answer to two safe prompts
    assert built.card.duplicates_removed == {"over_refusal": 2}
    assert built.card.total() == 748 and built.card.total(label=1) == 244
    assert all(len(splits) == 1 for splits in _split_of_each_group(built).values())


def test_halueval_4507_answers_815_hallucinations(shared_data):
    built = _build("halueval", str(shared_data))
    assert built.card.total() == 4507 and built.card.total(label=1) == 815
    assert built.card.skipped["total"] == 0 and built.card.duplicates_removed == {}
    shares = {s: built.card.total(s, 1) / built.card.total(s) for s in ("train", "validation", "test")}
    assert max(shares.values()) - min(shares.values()) < 0.01  # stratified by label
