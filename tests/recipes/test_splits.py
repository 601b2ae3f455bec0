"""Splits: deterministic, grouped (no group in two splits), stratified by label, duplicates counted."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from recipes_helpers import toy_examples

from recipes.schema import DataError, validate_example
from recipes.splits import (
    SplitFractions,
    assign_splits,
    check_group_leaks,
    dedupe_examples,
    subsample_stratified,
)


def _examples(n=200, groups=50, positive_every=4, category="toy"):
    return toy_examples(n, groups, positive_every=positive_every, category=category)


FRACTIONS = SplitFractions(0.6, 0.2, 0.2)


def _ids(splits):
    return {name: [e["id"] for e in rows] for name, rows in splits.items()}


def test_same_input_and_seed_give_identical_splits():
    assert _ids(assign_splits(_examples(), FRACTIONS, 7)) == _ids(assign_splits(_examples(), FRACTIONS, 7))


def test_input_order_does_not_change_membership():
    shuffled = _examples()
    random.Random(0).shuffle(shuffled)
    first = {k: sorted(v) for k, v in _ids(assign_splits(_examples(), FRACTIONS, 7)).items()}
    second = {k: sorted(v) for k, v in _ids(assign_splits(shuffled, FRACTIONS, 7)).items()}
    assert first == second


def test_another_seed_gives_other_splits():
    assert _ids(assign_splits(_examples(), FRACTIONS, 1)) != _ids(assign_splits(_examples(), FRACTIONS, 2))


def test_groups_never_straddle_splits_and_every_example_is_placed():
    examples = _examples(300, groups=37)
    splits = assign_splits(examples, FRACTIONS, 3)
    homes = {}
    for name, rows in splits.items():
        for example in rows:
            assert homes.setdefault(example["group"], name) == name
    assert sorted(e["id"] for rows in splits.values() for e in rows) == sorted(e["id"] for e in examples)


def test_sizes_and_label_shares_follow_the_fractions():
    examples = _examples(1000, groups=1000, positive_every=4)  # singleton groups: exact stratification
    splits = assign_splits(examples, FRACTIONS, 5)
    assert {k: len(v) for k, v in splits.items()} == {"train": 600, "validation": 200, "test": 200}
    assert {k: sum(e["label"] for e in v) for k, v in splits.items()} == {"train": 150, "validation": 50, "test": 50}


def test_grouped_splits_stay_close_to_the_fractions():
    examples = _examples(770, groups=10, positive_every=3)  # 10 groups of 77, like GPTFuzz's questions
    sizes = {k: len(v) for k, v in assign_splits(examples, FRACTIONS, 5).items()}
    assert sizes == {"train": 462, "validation": 154, "test": 154}


def test_each_category_is_split_on_its_own():
    examples = _examples(100, 100, category="a") + _examples(50, 50, category="b")
    splits = assign_splits(examples, FRACTIONS, 0)
    per = Counter((e["category"], name) for name, rows in splits.items() for e in rows)
    assert per[("a", "train")] == 60 and per[("b", "train")] == 30


def test_zero_fraction_split_stays_empty():
    splits = assign_splits(_examples(), SplitFractions(0.8, 0.0, 0.2), 0)
    assert splits["validation"] == [] and len(splits["train"]) + len(splits["test"]) == 200


def test_pinned_groups_go_to_their_split():
    examples = _examples(100, groups=20)
    pinned = {e["id"]: "test" for e in examples if e["group"] in ("g1", "g2")}
    splits = assign_splits(examples, FRACTIONS, 0, pinned=pinned)
    assert {e["group"] for e in splits["test"]} >= {"g1", "g2"}


def test_group_pinned_to_two_splits_is_a_leak_naming_file_row_and_field():
    examples = _examples(20, groups=10)
    same_group = [e for e in examples if e["group"] == "g3"]
    pinned = {same_group[0]["id"]: "train", same_group[1]["id"]: "test"}
    with pytest.raises(DataError) as caught:
        assign_splits(examples, FRACTIONS, 0, pinned=pinned)
    assert str(caught.value).startswith("data.csv:4: field 'group': expected every example of a group in one split")
    assert "'g3'" in str(caught.value) and "test and train" in str(caught.value)


def test_leak_check_names_the_leaking_group():
    examples = _examples(4, groups=2)
    with pytest.raises(DataError, match=r"data\.csv:3: field 'group'.*group 'g0' of category 'toy' in train and test"):
        check_group_leaks({"train": examples[:2], "validation": [], "test": examples[2:]})


def test_exact_duplicates_are_removed_and_counted():
    examples = _examples(10, 10)
    twin = validate_example({**examples[3], "id": None, "group": "other", "meta": {}})
    conflict = validate_example({**examples[4], "id": None, "label": 1 - examples[4]["label"]})
    result = dedupe_examples(examples + [twin, conflict])
    assert [e["id"] for e in result.examples] == [e["id"] for e in examples]
    assert result.removed == {"toy": 2}
    assert result.conflicting == {"toy": 1}


def test_same_text_in_another_category_is_not_a_duplicate():
    result = dedupe_examples(_examples(5, 5, category="a") + _examples(5, 5, category="b"))
    assert len(result.examples) == 10 and result.removed == {}


def test_stratified_subsample_keeps_label_balance_and_is_deterministic():
    examples = _examples(400, 400, positive_every=4)
    kept, dropped = subsample_stratified(examples, 100, seed=3)
    assert len(kept) == 100 and dropped == {"toy": 300}
    assert sum(e["label"] for e in kept) == 25
    assert [e["id"] for e in kept] == [e["id"] for e in subsample_stratified(examples, 100, seed=3)[0]]
    assert subsample_stratified(examples, None, 3) == (examples, {})


@pytest.mark.parametrize(
    "values",
    [
        pytest.param((0.5, 0.2, 0.2), id="sum_below_one"),
        pytest.param((1.2, -0.1, -0.1), id="out_of_range"),
        pytest.param((0.0, 0.5, 0.5), id="no_train"),
    ],
)
def test_bad_fractions_are_rejected(values):
    with pytest.raises(DataError, match="field 'splits"):
        SplitFractions(*values)
