"""Mixtures (per-source caps, dedupe across sources) and source-held-out splits, on synthetic rows."""

from __future__ import annotations

from collections import Counter

import pytest
from recipes_helpers import TOY_COLUMNS, TOY_LABELS, toy_examples, toy_rows, write_csv, write_yaml

from recipes.builders import build_datasets, load_data_recipe
from recipes.mixtures import MixturePlan, cap_sources, dedupe_across_sources, mix
from recipes.schema import DataError, validate_example
from recipes.splits import SplitFractions, assign_splits, check_held_out


FRACTIONS = SplitFractions(0.6, 0.2, 0.2)


def _rows(source: str, n: int, groups: int, category: str = "toy", positive_every: int = 3, text: str = "") -> list:
    return toy_examples(n, groups, positive_every=positive_every, category=category, source=source, text=text)


@pytest.mark.parametrize("cap_by", ["rows", "groups"])
def test_caps_hold_per_source_keep_label_shares_and_leave_other_sources(cap_by):
    big, small = _rows("big", 900, 30), _rows("small", 60, 20)
    kept, dropped = cap_sources(big + small, {"toy": {"big": 100}}, seed=3, cap_by=cap_by)
    per = Counter(e["source"] for e in kept)
    assert per["small"] == 60 and per["big"] <= 100
    assert dropped == {"toy": {"big": 900 - per["big"]}}
    positives = sum(e["label"] for e in kept if e["source"] == "big")
    assert abs(positives / per["big"] - 300 / 900) < 0.05  # the label share survives the cap
    assert kept == [e for e in big + small if e in kept]  # input order kept
    again, _ = cap_sources(big + small, {"toy": {"big": 100}}, seed=3, cap_by=cap_by)
    assert [e["id"] for e in again] == [e["id"] for e in kept]


def test_row_caps_spread_over_every_group_and_group_caps_keep_groups_whole():
    big = _rows("big", 900, 30)  # 30 rows per group
    spread, _ = cap_sources(big, {"toy": {"big": 90}}, seed=1, cap_by="rows")
    assert len(spread) == 90 and len({e["group"] for e in spread}) == 30
    whole, _ = cap_sources(big, {"toy": {"big": 90}}, seed=1, cap_by="groups")
    sizes = Counter(e["group"] for e in whole)
    assert len(whole) == 90 and set(sizes.values()) == {30}  # three complete groups


def test_duplicates_across_sources_are_counted_and_the_held_out_copy_survives():
    first = _rows("a", 20, 10, text="shared")
    second = _rows("b", 20, 10, text="shared")[:5] + _rows("b", 30, 10)[20:]
    result, across = dedupe_across_sources(first + second, {})
    assert across == {"toy": {"b -> a": 5}} and result.removed == {"toy": 5}
    result, across = dedupe_across_sources(first + second, {"toy": ["b"]})
    assert across == {"toy": {"a -> b": 5}}
    kept = Counter(e["source"] for e in result.examples)
    assert kept == {"a": 15, "b": 15}


def test_mix_reports_loaded_deduped_and_kept_rows_per_source():
    rows = _rows("a", 300, 30) + _rows("b", 40, 10) + _rows("b", 40, 10)[:3]
    mixed, report = mix(rows, MixturePlan(caps={"toy": {"a": 50}}), seed=0)
    assert report.sources["toy"]["a"] == {
        "loaded": 300,
        "after_dedupe": 300,
        "cap": 50,
        "kept": 50,
        "positives": 17,
        "groups": 30,
        "held_out": 0,
    }
    assert report.sources["toy"]["b"]["loaded"] == 43 and report.sources["toy"]["b"]["after_dedupe"] == 40
    assert report.dedup.removed == {"toy": 3} and len(mixed) == 90


def test_held_out_source_goes_to_test_only_with_any_group_it_shares():
    seen, held = _rows("seen", 200, 40), _rows("held", 60, 12)
    # one in-source group has the same key as a held-out group: it must not train either
    twin = validate_example({**_rows("seen", 1, 1)[0], "prompt": "twin", "group": "held-g3"})
    splits = assign_splits(seen + held + [twin], FRACTIONS, 5, held_out={"toy": ["held"]})
    for name in ("train", "validation"):
        assert not any(e["source"] == "held" or e["group"].startswith("held-") for e in splits[name])
    assert twin in splits["test"] and all(e in splits["test"] for e in held)
    in_source = Counter(name for name, rows in splits.items() for e in rows if e in seen)
    assert in_source == {"train": 120, "validation": 40, "test": 40}  # the rest split as before


def test_held_out_row_is_test_in_every_category_the_source_serves():
    held = _rows("shared", 30, 10, category="a")
    twin = [validate_example({**e, "category": "b", "id": None}) for e in held]
    others = _rows("other", 60, 20, category="a") + _rows("other", 60, 20, category="b")
    splits = assign_splits(held + twin + others, FRACTIONS, 2, held_out={"a": ["shared"]})
    assert all(e in splits["test"] for e in twin)  # held out in a, so never trained on in b


def test_check_held_out_names_the_row_that_leaked():
    held = _rows("held", 4, 2)
    with pytest.raises(DataError) as error:
        check_held_out({"train": held[:1], "test": held[1:]}, {"toy": ["held"]})
    assert "held.csv" in str(error.value) and "source" in str(error.value)


def _recipe(tmp_path, categories, **extra) -> str:
    data = {"name": "mix", "categories": categories, "splits": {"train": 0.6, "validation": 0.2, "test": 0.2}}
    return str(write_yaml(tmp_path / "recipe.yaml", {**data, **extra}))


@pytest.fixture
def two_sources(tmp_path, toy_category_dir):
    write_csv(tmp_path / "one.csv", toy_rows(200, groups=40))
    write_csv(tmp_path / "two.csv", [{**r, "q": "two " + r["q"]} for r in toy_rows(60, groups=12)])
    sources = [
        {"name": n, "kind": "csv", "path": f"{n}.csv", "columns": TOY_COLUMNS, "label_map": TOY_LABELS, **extra}
        for n, extra in (("one", {"label_origin": "human"}), ("two", {"label_origin": "machine"}))
    ]
    return tmp_path, toy_category_dir(sources)


def test_build_caps_holds_out_and_cards_rows_per_source(tmp_path, two_sources):
    root, cats = two_sources
    recipe = _recipe(
        tmp_path, [{"name": "toy", "sources": ["one", "two"]}], caps={"toy": {"one": 80}}, test_sources=["two"]
    )
    built = build_datasets(load_data_recipe(recipe), data_root=root, categories_dirs=[cats])
    card = built.card
    assert card.held_out == {"toy": ["two"]} and card.label_origins == {"one": "human", "two": "machine"}
    assert card.source_counts["toy"]["two"] == {"test": {"1": 30, "0": 30}}
    one = card.source_counts["toy"]["one"]
    assert sum(n for split in one.values() for n in split.values()) == 80
    assert card.mixture["toy"]["one"]["cap"] == 80 and card.mixture["toy"]["two"]["held_out"] == 1
    assert all(e["meta"].get("held_out") for e in built.splits["test"] if e["source"] == "two")
    assert all(e["meta"]["label_origin"] == "machine" for e in built.splits["test"] if e["source"] == "two")
    assert "| toy | two | machine | yes |" in card.to_markdown()


@pytest.mark.parametrize(
    ("category", "extra", "field_name"),
    [
        ({"name": "toy", "sources": ["one", "two"]}, {"caps": {"toy": {"three": 5}}}, "caps.toy"),
        ({"name": "toy", "sources": ["one", "two"]}, {"caps": {"tyo": {"one": 5}}}, "caps"),
        ({"name": "toy", "sources": ["one", "two"]}, {"test_sources": {"toy": ["one", "two"]}}, "test_sources"),
        ({"name": "toy", "sources": ["one", "two"]}, {"test_sources": {"toy": ["three"]}}, "test_sources.toy"),
        ({"name": "toy", "sources": ["one"]}, {"test_sources": ["two"]}, "test_sources"),
        ({"name": "toy", "sources": ["one"]}, {"caps": {"toy": {"one": 0}}}, "caps.toy.one"),
        ({"name": "toy", "sources": ["one"]}, {"cap_by": "rowz"}, "cap_by"),
    ],
)
def test_bad_mixture_keys_name_the_file_and_field(tmp_path, two_sources, category, extra, field_name):
    root, cats = two_sources
    with pytest.raises(DataError) as error:
        build_datasets(
            load_data_recipe(_recipe(tmp_path, [category], **extra)), data_root=root, categories_dirs=[cats]
        )
    assert "recipe.yaml" in str(error.value) and field_name in str(error.value)
