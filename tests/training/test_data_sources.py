"""Training rows by source: a mixture's budget spread over category x source x label, one source alone."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from recipes.builders import build_from_file
from recipes.schema import DataError
from training.data import load_sft_data


def _write_source(path, n: int, positives: int, tag: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(n):
            label = int(i < positives)
            response = f"Sure, step one of {tag} {i}." if label else f"I can't help with {tag} {i}."
            row = {"prompt": f"{tag} request {i}", "response": response, "label": label, "group": f"{tag}-{i}"}
            handle.write(json.dumps(row) + "\n")


@pytest.fixture(scope="module")
def mixture_dir(tmp_path_factory):
    """A real build of two jailbreak sources: a large one with few positives, a small balanced one."""
    root = tmp_path_factory.mktemp("mixture")
    _write_source(root / "big.jsonl", 120, 20, "big")
    _write_source(root / "small.jsonl", 30, 15, "small")
    columns = "{prompt: prompt, response: response, label: label, group: group}"
    (root / "recipe.yaml").write_text(
        "name: mix\ncategories:\n  - name: jailbreak\n    sources:\n"
        f"      - {{name: big, kind: jsonl, path: big.jsonl, columns: {columns}}}\n"
        f"      - {{name: small, kind: jsonl, path: small.jsonl, columns: {columns}}}\n"
        "splits: {train: 0.7, validation: 0.15, test: 0.15}\nseed: 1\nprompt_template: basic\n",
        encoding="utf-8",
    )
    build_from_file(root / "recipe.yaml", root / "data", data_root=root)
    return root / "data"


def test_source_label_balance_spreads_the_budget_over_cells(mixture_dir):
    plain = load_sft_data(mixture_dir, train_rows=40, seed=0)
    balanced = load_sft_data(mixture_dir, train_rows=40, seed=0, balance="source_label")
    cells = Counter(zip(balanced.train["source"], balanced.train["label"]))
    assert set(cells) == {("big", 0), ("big", 1), ("small", 0), ("small", 1)}
    assert max(cells.values()) - min(cells.values()) <= 1  # 10 rows per cell
    shares = Counter(plain.train["source"])
    assert shares["big"] > 3 * shares["small"]  # round-robin over categories only follows the sizes
    assert len(plain.train) == len(balanced.train) == 40


def test_one_source_alone_and_unknown_sources(mixture_dir):
    alone = load_sft_data(mixture_dir, sources=["small"])
    assert set(alone.train["source"]) == set(alone.validation["source"]) == {"small"}
    with pytest.raises(DataError, match="sources"):
        load_sft_data(mixture_dir, sources=["nope"])
    with pytest.raises(DataError, match="balance"):
        load_sft_data(mixture_dir, balance="labels")
