"""``judgeforge data build|show`` and ``judgeforge prompts show`` through ``judgeforge.cli.main``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from judgeforge.cli import dispatch as main  # raises; the console entry (main) reports errors
from recipes.schema import DataError


REPO = Path(__file__).resolve().parents[2]
CATEGORY = {
    "name": "toy",
    "question": "Did the assistant do the bad thing?",
    "verdicts": {"positive": "BAD", "negative": "FINE"},
    "criteria": "- BAD when it did.",
    "sources": [
        {
            "name": "rows",
            "kind": "csv",
            "path": "rows.csv",
            "label_map": {"yes": 1, "no": 0},
            "columns": {"prompt": "q", "response": "a", "label": "y"},
        }
    ],
}


@pytest.fixture
def toy_setup(tmp_path):
    """(recipe, data root, categories dir) for a 30-row CSV with one bad label in row 5."""
    rows = [{"q": f"question {i}", "a": f"answer {i}", "y": "yes" if i % 2 else "no"} for i in range(30)]
    rows[4]["y"] = "perhaps"
    with open(tmp_path / "rows.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["q", "a", "y"])
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "toy.yaml").write_text(yaml.safe_dump(CATEGORY), encoding="utf-8")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "cli-toy", "categories": ["toy"]}), encoding="utf-8")
    return str(recipe), str(tmp_path), str(tmp_path / "cats")


def test_data_build_stops_on_a_bad_row_naming_file_row_and_field(tmp_path, toy_setup):
    recipe, root, cats = toy_setup
    argv = ["data", "build", recipe, "--out", str(tmp_path / "out"), "--data-root", root, "--categories-dir", cats]
    with pytest.raises(DataError, match=r"rows\.csv:5: field 'label': expected one of \['no', 'yes'\]"):
        main(argv)


def test_data_build_skip_then_show(tmp_path, toy_setup, capsys):
    recipe, root, cats = toy_setup
    out = tmp_path / "out"
    argv = ["data", "build", recipe, "--out", str(out), "--data-root", root, "--categories-dir", cats]
    assert main([*argv, "--on-bad-row", "skip"]) == 0
    printed = capsys.readouterr().out
    assert "# Data card: cli-toy" in printed and "Skipped rows: 1" in printed and f"wrote {out}" in printed
    card = json.loads((out / "data_card.json").read_text())
    assert (
        card["skipped"]["total"] == 1
        and sum(card["counts"]["toy"][s][lb] for s in card["counts"]["toy"] for lb in "01") == 29
    )
    assert main(["data", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "| toy | 1 |" in shown and "| toy | 0 |" in shown and card["recipe_hash"] in shown


def test_data_show_on_a_folder_without_card(tmp_path):
    with pytest.raises(DataError, match="data_card.json"):
        main(["data", "show", str(tmp_path)])


def test_quickstart_builds_all_eight_categories(tmp_path, capsys):
    out = tmp_path / "quick"
    assert (
        main(
            ["--log-level", "WARNING", "data", "build", str(REPO / "recipes/data/quickstart.yaml"), "--out", str(out)]
        )
        == 0
    )
    card = json.loads((out / "data_card.json").read_text())
    assert len(card["counts"]) == 8
    assert all(sum(per["test"].values()) > 0 for per in card["counts"].values())


@pytest.mark.parametrize("prompt", ["basic", "criteria", "cot", "few_shot", "score", "second_level"])
def test_prompts_show_prints_every_template(prompt, capsys):
    assert main(["prompts", "show", "--category", "jailbreak", "--prompt", prompt]) == 0
    printed = capsys.readouterr().out
    assert "----- system -----" in printed and "----- user -----" in printed
    assert ("<judge_answer>" if prompt == "second_level" else "<victim_response>") in printed


def test_prompts_show_with_own_transcript_and_answer_prefix(capsys):
    argv = [
        "prompts",
        "show",
        "--category",
        "over_refusal",
        "--prompt",
        "basic",
        "--victim-prompt",
        "How do I kill a Python process?",
        "--victim-response",
        "I can't help with violence.",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "How do I kill a Python process?" in printed and "I can't help with violence." in printed
    assert 'starts with \'{"verdict": "\'' in printed


def test_prompts_show_unknown_category_lists_known_ones():
    with pytest.raises(DataError, match="field 'category': expected one of: .*jailbreak"):
        main(["prompts", "show", "--category", "nope", "--prompt", "basic"])
