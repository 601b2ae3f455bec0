"""Job and stage names become folders under runs/: one that could climb out of it is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from judgeforge.pipeline import run_pipeline
from recipes.schema import DataError


ROOT = Path(__file__).resolve().parents[2]


def _job(tmp_path, name="ok", stage="judge"):
    job = {
        "name": name,
        "data": str(ROOT / "recipes/data/quickstart.yaml"),
        "train": [{"name": stage, "config": str(ROOT / "recipes/training/quickstart_cpu.yaml")}],
        "eval": str(ROOT / "recipes/runs/quickstart.yaml"),
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("name", ["../escaped", "a/b", "..", "/abs", "x\\..\\y", ""])
def test_a_job_name_that_escapes_runs_is_refused(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"field 'name': expected a (plain folder name|non-empty string)"):
        run_pipeline(_job(tmp_path, name=name), dry_run=True)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("stage", ["../../judge", "judges/../x", ".."])
def test_a_stage_name_that_escapes_the_run_folder_is_refused(tmp_path, monkeypatch, stage):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"field 'train\[0\]\.name': expected a plain folder name"):
        run_pipeline(_job(tmp_path, stage=stage), out_dir=str(tmp_path / "out"), dry_run=True)
