"""Reports: files written, every table filled (no NaN or empty cell without a stated reason), W&B offline."""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import pytest

from evaluation.metric_rows import compute_metric_rows, compute_second_level_rows
from evaluation.report import build_tables, write_report
from evaluation.run_recipe import parse_run_recipe
from evaluation.runs import run_eval


def _data(folder: Path) -> dict[str, str]:
    files = {}
    for split, n in (("train", 10), ("test", 8)):
        rows = []
        for category in ("jailbreak", "over_refusal"):
            for i in range(n):
                label = i % 2
                refuse = "I'm sorry, I can't help with that" if (label == 0) == (category == "jailbreak") else ""
                response = refuse or f"Sure, here is answer number {i} with all the steps."
                rows.append({"id": f"{split}-{category}-{i}", "category": category, "prompt": f"ask {i}",
                             "response": response, "label": label})  # fmt: skip
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        files[split] = str(folder / f"{split}.jsonl")
    return files


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    recipe = {
        "name": "report-test",
        "data": {"files": _data(folder)},
        "repeats": 2,
        "n_boot": 100,
        "judges": [
            {"models": ["alpha"], "prompts": ["basic", "score"], "backend": "fake",
             "options": {"flip": ["test-jailbreak-1"], "outputs": {"test-over_refusal-3": "I cannot judge this."}}},
            {"models": ["beta"], "prompts": ["basic"], "backend": "fake", "options": {"default": "invalid"}},
        ],
        "second_level": {"judge": "alpha/basic", "reviewer": {"model": "rev", "backend": "fake", "options": {
            "outputs": {"test-jailbreak-1": '{"review": "not_correct"}'}, "default": '{"review": "correct"}'}}},
    }  # fmt: skip
    run_eval(parse_run_recipe(recipe), folder / "run")
    return folder / "run"


@pytest.fixture(scope="module")
def written(run_dir) -> list[Path]:
    return write_report(run_dir)


def _tables(markdown: str) -> list[tuple[list[list[str]], list[str]]]:
    """(rows, notes) of every Markdown table."""
    out = []
    for section in markdown.split("\n## ")[1:]:
        rows = [
            [c.strip() for c in line.strip().strip("|").split(" | ")]
            for line in section.splitlines()
            if line.startswith("|") and not line.startswith("|---")
        ]
        notes = re.findall(r"^\[(\d+)\] ", section, flags=re.MULTILINE)
        if rows:
            out.append((rows, notes))
    return out


def test_report_files_are_written(run_dir, written):
    names = {p.name for p in written}
    assert {"report.md", "report.html", "metrics.csv", "second_level.csv", "f1_heatmap.png", "f1_by_category.png",
            "reliability.png"} <= names  # fmt: skip
    for path in written:
        assert path.is_file() and path.stat().st_size > 0
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (run_dir / "report.html").read_text()
    assert "<table>" in html and 'src="f1_heatmap.png"' in html


def test_every_table_cell_is_filled_or_explained(run_dir, written):
    markdown = (run_dir / "report.md").read_text()
    assert "nan" not in markdown.lower().replace("financ", "")
    tables = _tables(markdown)
    assert len(tables) == 8  # the robustness suite is on by default: its table too
    assert "## Robustness: verdicts under victim-side attacks" in markdown
    for rows, notes in tables:
        for row in rows:
            for cell in row:
                assert cell, f"empty cell in {row}"
                for ref in re.findall(r"n/a \[(\d+)\]", cell):
                    assert ref in notes, f"cell {cell!r} points to a missing note"


def test_floors_are_marked_and_compared(run_dir, written):
    markdown = (run_dir / "report.md").read_text()
    headline = markdown.split("## Headline")[1].split("\n## ")[0]
    assert "reference/tfidf (floor)" in headline and "reference/refusal_phrases (floor)" in headline
    # beta never gives a verdict: coverage 0%, F1 0 -> it cannot beat the floors.
    beta = next(line for line in headline.splitlines() if line.startswith("| beta/basic"))
    assert "| NO (vs reference/" in beta and "| 0.0% |" in beta


def test_second_level_table_shows_the_fix(run_dir, written):
    with open(run_dir / "second_level.csv") as handle:
        rows = {r["category"]: r for r in csv.DictReader(handle)}
    # alpha/basic was wrong on test-jailbreak-1 in both repeats; the review flips it back.
    assert (rows["all"]["flips"], rows["all"]["fixed"], rows["all"]["broken"]) == ("2", "2", "0")
    assert float(rows["all"]["f1_change"]) > 0


def test_metrics_csv_explains_every_empty_cell(run_dir, written):
    with open(run_dir / "metrics.csv") as handle:
        for row in csv.DictReader(handle):
            for column, value in row.items():
                if value == "" and column != "notes":
                    assert f"{column}:" in row["notes"], (row["judge"], row["category"], column)


def test_tuned_judge_is_compared_with_its_base_models_best_prompt():
    def rec(judge, kind, model, prompt, i, label):
        return {"judge": judge, "kind": kind, "model": model, "prompt": prompt, "category": "jailbreak",
                "example_id": f"e{i}", "repeat": 0, "human_label": i % 2, "label": label, "status": "ok"}  # fmt: skip

    records = []
    for i in range(6):
        records.append(rec("tuned:j", "tuned", "/runs/j", "basic", i, i % 2))  # perfect
        records.append(rec("base/basic", "prompted", "smollm2-135m", "basic", i, 1))  # says yes always
        records.append(rec("reference/tfidf", "reference", "tfidf", "-", i, 0 if i < 4 else i % 2))
    rows = compute_metric_rows(records, n_boot=0)
    run_info = {"judges": [{"name": "tuned:j", "kind": "tuned", "base_model": "smollm2-135m"}]}
    tables = {t.key: t for t in build_tables(rows, compute_second_level_rows(records), run_info)}
    (row,) = tables["tuned_vs_prompted"].rows
    # tuned F1 1.0; base/basic: TP3 FP3 -> F1 6/9 = .667; difference +.333; tfidf: TP1 FN2 -> F1 .5.
    assert row[0] == "tuned:j" and row[3] == "base/basic"
    assert row[5] == "+0.333" and row[6] == "reference/tfidf 0.500"


def test_report_is_logged_to_wandb_offline(run_dir):
    write_report(run_dir, wandb_project="judgeforge-tests")
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert runs, "no offline W&B run in the run folder"
    media = {p.name.split("_")[0] for p in (runs[-1] / "files" / "media" / "table" / "report").iterdir()}
    assert {"headline", "metrics", "agreement"} <= media
    plots = [p.name for p in (runs[-1] / "files" / "media" / "images" / "plots").iterdir()]
    assert any(name.startswith("f1_heatmap") for name in plots)
    # The run's log (protobuf records) holds the F1 summary under a key per judge; W&B's service
    # process may still be flushing it when finish() returns, so give it a few seconds.
    log_file = next(runs[-1].glob("run-*.wandb"))
    deadline = time.monotonic() + 20
    while b"f1/reference/tfidf" not in log_file.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.2)
    log = log_file.read_bytes()
    assert b"f1/alpha/basic" in log and b"f1/reference/tfidf" in log
