"""Scale-down as one value applied once at the edge, and the plan checked once per run."""

from __future__ import annotations

import json

import pytest

import evaluation.plan as plan_module
import evaluation.runs as runs
from evaluation.run_recipe import parse_run_recipe
from evaluation.scale import ScaleDown
from recipes.schema import DataError


def _recipe(tmp_path, **overrides):
    rows = [{"id": f"{c}-{i}", "category": c, "prompt": "p", "response": "Sure." if i % 2 else "I'm sorry, I can't.",
             "label": i % 2} for c in ("jailbreak", "over_refusal") for i in range(4)]  # fmt: skip
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {"name": "once", "data": {"files": {"test": str(data)}}, "repeats": 2, "n_boot": 0,
              "judges": [{"models": ["fake-a"], "prompts": ["basic", "cot"], "backend": "fake", "max_new_tokens": 64}],
              "reference": ["refusal_phrases"], "robustness": False, **overrides}  # fmt: skip
    return parse_run_recipe(recipe, str(tmp_path / "run.yaml"))


def test_the_empty_scale_down_changes_nothing_and_bad_flags_are_refused(tmp_path):
    recipe = _recipe(tmp_path)
    assert not ScaleDown() and ScaleDown().apply(recipe) is recipe
    assert ScaleDown().train_rows(3) is None and ScaleDown(limit=2).train_rows(3) == 6
    scaled = ScaleDown(limit=2, models=["m1", "m2"], max_new_tokens=8).apply(recipe)
    assert scaled.limit == 2 and scaled.judges[0].models == ["m1", "m2"] and scaled.judges[0].max_new_tokens == 8
    assert ScaleDown(models=["m1", "m2"]).model == "m1"
    for flags, name in (({"limit": 0}, "--limit"), ({"max_new_tokens": -1}, "--max-new-tokens")):
        with pytest.raises(DataError, match=f"field '{name}': expected a positive integer"):
            ScaleDown(**flags)


def test_run_eval_takes_a_ready_recipe_and_checks_the_plan_once(tmp_path, monkeypatch):
    calls = []
    check = plan_module.check_recipe
    monkeypatch.setattr(runs, "check_recipe", lambda *a, **k: calls.append(a[0].name) or check(*a, **k))
    summary = runs.run_eval(ScaleDown(limit=2).apply(_recipe(tmp_path)), tmp_path / "out")
    assert calls == ["once"]
    # 2 categories x 2 examples (the limit) x 2 repeats, for the reference judge and two prompted ones.
    assert summary.judged == 2 * 2 * 2 * 3


def test_dry_run_plan_checks_once_with_the_data_categories(tmp_path, monkeypatch):
    calls = []
    check = plan_module.check_recipe
    monkeypatch.setattr(plan_module, "check_recipe", lambda *a, **k: calls.append(a[1:]) or check(*a, **k))
    cells = plan_module.plan(_recipe(tmp_path), ["jailbreak"], data_categories=["jailbreak", "over_refusal"])
    assert calls == [(["jailbreak", "over_refusal"],)] and len(cells) == 3 * 1 * 2
    assert {type(c).__name__ for c in cells} == {"Cell"}
    bad = _recipe(tmp_path, categories=["malware"])
    with pytest.raises(DataError, match="a category present in the data"):
        plan_module.plan(bad, data_categories=["jailbreak"])
