"""``judgeforge train`` and ``judgeforge export`` through ``judgeforge.cli.main``, on data the real builder wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from judgeforge.cli import dispatch as main  # raises; the console entry (main) reports errors
from recipes.builders import build_from_file
from recipes.judge_card import JudgeCard


REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "recipes" / "training" / "quickstart_cpu.yaml"


@pytest.fixture(autouse=True)
def _single_thread():
    # The tiny model's ops are too small to split; two OpenMP threads on a shared CPU only spin-wait.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def quickstart_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("quickstart-data")
    build_from_file(REPO / "recipes" / "data" / "quickstart.yaml", out)
    return out


def _train_argv(config: Path, model: str, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        *("train", str(config), "--model_name_or_path", model, "--data_dir", str(data), "--output_dir", str(out)),
        *("--max_steps", "2", "--train_rows", "16", "--per_device_train_batch_size", "4", "--lora_layers", "1"),
        *("--eval_strategy", "no", "--eval_on_start", "false", "--save_strategy", "no", "--verdict_eval_rows", "8"),
        *extra,
    ]


def test_train_quickstart_recipe_with_overrides_then_export_merged(tiny_model_dir, quickstart_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train_argv(QUICKSTART, tiny_model_dir, quickstart_data, run)) == 0
    card = JudgeCard.read(run)
    built = json.loads((quickstart_data / "data_card.json").read_text(encoding="utf-8"))
    assert card.data_recipe_hash == built["recipe_hash"] and card.prompt_template == built["prompt_template"]
    assert len(card.categories) == 8 and card.verdict_words["jailbreak"] == ["JAILBROKEN", "SAFE"]
    assert card.metrics["judged"] + card.metrics["invalid_rate"] * 8 == 8
    state = json.loads((run / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["global_step"] == 2  # --max_steps on the command line beat the recipe's epochs

    merged = tmp_path / "merged"
    assert main(["export", str(run), "--merge", "--out", str(merged)]) == 0
    assert f"exported {run} -> {merged}" in capsys.readouterr().out
    assert (merged / "model.safetensors").is_file() and JudgeCard.read(merged).adapter is False


def test_train_rejects_an_unknown_config_key(tiny_model_dir, quickstart_data, tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text(QUICKSTART.read_text(encoding="utf-8") + "lora_rank: 8\n", encoding="utf-8")
    with pytest.raises(ValueError, match="lora_rank"):
        main(_train_argv(bad, tiny_model_dir, quickstart_data, tmp_path / "run"))
    with pytest.raises(ValueError, match="--lora_rnk"):
        main(_train_argv(QUICKSTART, tiny_model_dir, quickstart_data, tmp_path / "run", "--lora_rnk", "8"))
    assert not (tmp_path / "run" / "judge.json").exists()


def test_export_of_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(ValueError, match="judge.json"):
        main(["export", str(tmp_path), "--merge", "--out", str(tmp_path / "out")])
