"""The robustness suite inside a run: on by default, stored apart, its own report table, resumed, off on request."""

from __future__ import annotations

import json

import pytest
from test_runs import base_recipe

from evaluation.metric_rows import compute_metric_rows
from evaluation.report import write_report
from evaluation.robustness import is_attacked
from evaluation.run_recipe import RunRecipeError, parse_run_recipe
from evaluation.runs import run_eval
from evaluation.store import read_results


SUITE = {"attacks": ["evaluator_note", "fake_verdict"], "variants": 1, "limit": 2}


def _records(folder):
    return read_results(folder)


def test_the_suite_is_on_by_default():
    recipe = parse_run_recipe({"name": "x", "data": {"recipe": "recipes/data/quickstart.yaml"}})
    assert recipe.robustness is not None and recipe.robustness.variants == 1
    off = parse_run_recipe({"name": "x", "data": {"recipe": "recipes/data/quickstart.yaml"}, "robustness": False})
    assert off.robustness is None
    with pytest.raises(RunRecipeError, match=r"r\.yaml: field 'robustness\.limt'"):
        parse_run_recipe({"name": "x", "data": {"recipe": "recipes/data/quickstart.yaml"}, "robustness": {"limt": 1}},
                         "r.yaml")  # fmt: skip


def test_a_run_judges_attacked_copies_once_and_keeps_them_out_of_the_clean_tables(tmp_path):
    with_suite, without = tmp_path / "with", tmp_path / "without"
    recipe = base_recipe(tmp_path, robustness=SUITE)
    run_eval(parse_run_recipe(recipe), with_suite)
    run_eval(parse_run_recipe(base_recipe(tmp_path, robustness=False)), without)
    records, plain = _records(with_suite), _records(without)
    attacked = [r for r in records if is_attacked(r)]
    first_level = {r["judge"] for r in plain}
    # 2 clean examples per category x 2 categories x 2 attacks x 1 variant, per first-level judge, at repeat 0
    assert len(attacked) == 8 * len(first_level)
    assert {r["repeat"] for r in attacked} == {0} and {r["judge"] for r in attacked} == first_level
    assert all(r["clean_id"] in r["example_id"] and r["attack"] in SUITE["attacks"] for r in attacked)

    # The clean records are the run without the suite, record for record.
    def key(r):
        return (r["judge"], r["category"], r["example_id"], r["repeat"], r["label"], r["status"])

    assert sorted(map(key, (r for r in records if not is_attacked(r)))) == sorted(map(key, plain))
    clean_rows = compute_metric_rows([r for r in records if not is_attacked(r)], n_boot=0)
    assert clean_rows == compute_metric_rows(plain, n_boot=0)

    report = write_report(with_suite)
    table = report.table("robustness")
    assert {row[0] for row in table.rows} == first_level
    assert "Robustness: verdicts under victim-side attacks" in report.markdown.read_text()
    assert report.table("headline").rows == write_report(without).table("headline").rows  # copies change nothing

    # A rerun judges nothing again.
    size = (with_suite / "results.jsonl").stat().st_size
    summary = run_eval(parse_run_recipe(recipe), with_suite)
    assert (with_suite / "results.jsonl").stat().st_size == size and summary.resumed == len(records)


def test_a_robustness_summary_reaches_the_tuned_judges_card(tmp_path):
    from evaluation.robustness import compute_robustness_rows, robustness_summary

    run_eval(parse_run_recipe(base_recipe(tmp_path, robustness=SUITE)), tmp_path / "run")
    rows = compute_robustness_rows(_records(tmp_path / "run"))
    summary = robustness_summary(rows, "reference/refusal_phrases", split="test")
    assert summary["split"] == "test" and set(summary["attacks"]) == set(SUITE["attacks"])
    assert json.loads(json.dumps(summary)) == summary  # plain data, as judge.json stores it
