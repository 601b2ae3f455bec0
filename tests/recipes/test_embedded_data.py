"""The embedded data shipped with the package: enough rows per category, both labels, unique ids."""

from __future__ import annotations

from collections import Counter

import pytest
from recipes_helpers import CURATED

from recipes.sources import EMBEDDED_DIR, load_source, parse_source


@pytest.mark.parametrize("category", sorted(CURATED))
def test_embedded_category_is_big_enough_and_balanced(category):
    assert (EMBEDDED_DIR / f"{category}.jsonl").is_file(), f"missing embedded/{category}.jsonl"
    examples = load_source(parse_source({"name": "embedded", "kind": "embedded"}), category).examples
    labels = Counter(e["label"] for e in examples)
    assert len(examples) >= 60, f"{category}: {len(examples)} rows"
    assert labels[1] >= 25 and labels[0] >= 25, f"{category}: {dict(labels)}"
    assert len({e["id"] for e in examples}) == len(examples), f"{category}: repeated ids"


def test_embedded_ids_are_unique_across_categories():
    ids = Counter()
    for category in sorted(CURATED):
        if (EMBEDDED_DIR / f"{category}.jsonl").is_file():
            ids.update(
                e["id"] for e in load_source(parse_source({"name": "e", "kind": "embedded"}), category).examples
            )
    assert [i for i, n in ids.items() if n > 1] == []
