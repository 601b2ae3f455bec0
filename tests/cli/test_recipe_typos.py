"""A typo in any recipe kind fails before any work with the file, the key path and the known keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import evaluation.runs as runs
from judgeforge.cli import dispatch as main  # raises; the console entry (main) reports errors
from recipes.loader import RecipeError


ROOT = Path(__file__).resolve().parents[2]


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def no_models(monkeypatch):
    """Fail the test if a judge (and so a model) is ever built."""

    def refuse(*args, **kwargs):
        raise AssertionError("a judge was built")

    monkeypatch.setattr(runs, "build_judge", refuse)


def test_run_recipe_typo_in_a_judge_key(tmp_path, no_models):
    run = yaml.safe_load((ROOT / "recipes" / "runs" / "quickstart.yaml").read_text())
    run["judges"][0]["batch_sise"] = 2
    run["second_level"] = [{"judge": "best", "reviewer": {"model": "smollm2-135m", "temprature": 0}}]
    path = _write(tmp_path / "run.yaml", run)
    with pytest.raises(RecipeError) as caught:
        main(["eval", str(path), "--out", str(tmp_path / "out")])
    message = str(caught.value)
    assert f"{path}: field 'judges[0].batch_sise': expected one of the known keys (models, prompts, backend" in message
    assert "did you mean 'batch_size'?" in message and "`judgeforge recipe keys run`" in message
    assert f"{path}: field 'second_level[0].reviewer.temprature': expected one of the known keys (model," in message
    assert len(caught.value.problems) == 2
    assert not (tmp_path / "out").exists()


def test_data_recipe_typo_in_a_category_key(tmp_path):
    path = _write(tmp_path / "data.yaml", {"name": "d", "categories": [{"name": "jailbreak", "sorces": ["x"]}],
                                          "seeed": 1})  # fmt: skip
    with pytest.raises(RecipeError) as caught:
        main(["data", "build", str(path), "--out", str(tmp_path / "out")])
    message = str(caught.value)
    assert f"{path}: field 'seeed': expected one of the known keys (name, categories, splits, seed," in message
    assert f"{path}:categories[0]: field 'sorces': expected one of the known keys (name, sources; did you" in message
    assert not (tmp_path / "out").exists()


def test_job_recipe_typo_in_a_stage_key(tmp_path):
    stage = {"name": "a", "config": str(ROOT / "recipes" / "training" / "quickstart_cpu.yaml"), "arsg": {}}
    job = {"name": "j", "data": str(ROOT / "recipes/data/quickstart.yaml"), "eval": "no-such.yaml", "train": [stage]}
    path = _write(tmp_path / "job.yaml", job)
    with pytest.raises(RecipeError) as caught:
        main(["run", str(path), "--out", str(tmp_path / "out"), "--dry-run"])
    message = str(caught.value)
    assert f"{path}: field 'train[0].arsg': expected one of the known keys (name, config, cpu_config," in message
    assert "did you mean 'args'?" in message
    assert not (tmp_path / "out").exists()


def test_source_typo_in_a_category_file(tmp_path):
    category = {
        "name": "toy",
        "question": "Did the assistant do the bad thing?",
        "verdicts": {"positive": "BAD", "negative": "FINE"},
        "criteria": "- BAD when it did.",
        "sources": [{"name": "rows", "kind": "csv", "path": "rows.csv", "colums": {"prompt": "q"}}],
    }
    cats = tmp_path / "cats"
    cats.mkdir()
    cat_file = _write(cats / "toy.yaml", category)
    recipe = _write(tmp_path / "data.yaml", {"name": "d", "categories": ["toy"]})
    with pytest.raises(RecipeError) as caught:
        main(["data", "build", str(recipe), "--out", str(tmp_path / "out"), "--categories-dir", str(cats)])
    message = str(caught.value)
    assert f"{cat_file}:sources[0]: field 'colums': expected one of the known keys (name, kind, path," in message
    assert "did you mean 'columns'?" in message and "`judgeforge recipe keys source`" in message
    assert f"{cat_file}:sources[0]: field 'columns.prompt': expected the source column holding it" in message
    assert not (tmp_path / "out").exists()


def test_recipe_keys_prints_every_key_with_its_help(capsys):
    for kind, line in (
        ("run", "repeats: an integer >= 1; default 5. repeats of every judge (seed + r)"),
        ("data", "  sources: "),
        ("job", "  accelerate_config: a string or null; default None."),
        ("source", "path: a non-empty string or a list of non-empty strings; default ()."),
    ):
        assert main(["recipe", "keys", kind]) == 0
        assert line in capsys.readouterr().out, kind
