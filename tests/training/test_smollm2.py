"""The real SmolLM2-135M-Instruct (alias ``smollm2-135m``), LoRA-tuned for a few steps on this CPU."""

import json

import pytest
from peft import PeftConfig

from recipes.judge_card import JudgeCard


@pytest.mark.slow
def test_lora_tunes_real_smollm2_for_a_few_steps(smollm2_dir, train, run_argv, tmp_path):
    out = train(
        run_argv(
            *("--model_name_or_path", "smollm2-135m", "--lora_layers", "4", "--learning_rate", "1e-3"),
            *("--max_steps", "6", "--per_device_train_batch_size", "4", "--verdict_eval_rows", "8"),
            output_dir=tmp_path / "smollm2",
        )
    )
    history = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses) == 6 and min(losses[-2:]) < losses[0]
    card = JudgeCard.read(out)
    assert card.base_model == "smollm2-135m" and card.adapter  # the alias, so evaluation resolves the same weights
    assert card.metrics["invalid_rate"] == 0.0 and card.metrics["judged"] == 8
    adapter = PeftConfig.from_pretrained(str(out))
    assert all(".layers.2" in name for name in adapter.target_modules)  # layers 26-29 of 30
    assert len(adapter.target_modules) == 4 * 7
