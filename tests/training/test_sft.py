"""End-to-end runs of ``training.sft.main`` on the tiny model: LoRA, full, LoRA on top layers."""

import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from recipes.judge_card import JudgeCard
from training.checks import check_saved_adapter


def _losses(run_dir):
    history = json.loads((run_dir / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def test_lora_lowers_loss_changes_weights_and_writes_judge_json(train, run_argv, tiny_model_dir, tmp_path):
    out = train(run_argv("--max_steps", "8", output_dir=tmp_path / "lora"))
    losses = _losses(out)
    assert len(losses) == 8 and sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.5

    adapter = load_file(str(out / "adapter_model.safetensors"))
    lora_b = [t for k, t in adapter.items() if "lora_B" in k]
    assert lora_b and all(t.abs().sum() > 0 for t in lora_b)  # lora_B starts at zero: every one moved
    assert check_saved_adapter(out) == len(adapter)

    card = JudgeCard.read(out)
    assert card.base_model == tiny_model_dir and card.adapter is True
    assert card.prompt_template == "basic" and card.data_recipe_hash == "fixture0123456789"
    assert card.verdict_words == {"jailbreak": ["JAILBROKEN", "SAFE"]} and card.categories == ["jailbreak"]
    assert {"f1", "precision", "recall", "accuracy", "invalid_rate"} <= set(card.metrics)
    assert 0.0 <= card.threshold <= 1.0
    verdicts = [json.loads(line) for line in (out / "validation_verdicts.jsonl").read_text().splitlines()]
    assert len(verdicts) == 8 and all(0.0 <= v["p_positive"] <= 1.0 for v in verdicts)
    assert "## judgeforge" in (out / "README.md").read_text(encoding="utf-8")
    assert json.loads((out / "train_summary.json").read_text(encoding="utf-8"))["train_rows_too_long"] == 0
    # The tuned judge ships with the model's own chat template, not the training variant.
    assert "{% generation" not in (out / "chat_template.jinja").read_text(encoding="utf-8")

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
        after = PeftModel.from_pretrained(base, str(out))(input_ids=ids).logits
    assert not torch.allclose(before, after)


def test_full_fine_tune_lowers_loss_and_changes_weights(train, run_argv, tiny_model_dir, tmp_path):
    out = train(
        run_argv("--use_peft", "false", "--learning_rate", "1e-3", "--max_steps", "8", output_dir=tmp_path / "full")
    )
    losses = _losses(out)
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.5
    assert not (out / "adapter_model.safetensors").exists()
    tuned = load_file(str(out / "model.safetensors"))
    original = load_file(f"{tiny_model_dir}/model.safetensors")
    changed = [k for k in original if not torch.equal(original[k], tuned[k])]
    assert len(changed) >= len(original) - 1  # every trained tensor moved
    assert JudgeCard.read(out).adapter is False


def test_lora_layers_adapts_only_the_top_layers(train, run_argv, tmp_path):
    out = train(run_argv("--lora_layers", "1", "--max_steps", "2", output_dir=tmp_path / "top"))
    keys = load_file(str(out / "adapter_model.safetensors")).keys()
    assert keys and all(".layers.1." in k for k in keys)
    assert len(keys) == 14  # 7 linear modules of the top layer x (lora_A, lora_B)


def test_verdict_metrics_are_logged_next_to_the_loss_at_each_evaluation(train, run_argv, tmp_path):
    out = train(
        run_argv(
            "--eval_strategy", "steps", "--eval_steps", "3", "--eval_on_start", "true", output_dir=tmp_path / "ev"
        )
    )
    history = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    evaluated = {entry["step"] for entry in history if "eval_f1" in entry}
    assert evaluated == {0, 3, 6}
    assert {entry["step"] for entry in history if "eval_loss" in entry} == {0, 3, 6}
    last = [entry for entry in history if "eval_f1" in entry][-1]
    assert {"eval_precision", "eval_recall", "eval_accuracy", "eval_invalid_rate", "eval_auroc"} <= set(last)
    assert JudgeCard.read(out).metrics["f1"] == last["eval_f1"]  # the final evaluation is not repeated


def test_a_diverging_run_stops_with_a_clear_error(train, run_argv, tmp_path, monkeypatch):
    """A NaN loss stops training at the next log instead of training on with NaN weights."""
    from training.callbacks import TrainingDiverged
    from training.trainer import JudgeSFTTrainer

    original = JudgeSFTTrainer.compute_loss
    calls = []

    def poisoned(self, *args, **kwargs):  # from the third batch on, the loss is NaN
        loss = original(self, *args, **kwargs)
        calls.append(1)
        return loss * float("nan") if len(calls) >= 3 else loss

    monkeypatch.setattr(JudgeSFTTrainer, "compute_loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"diverged by step 3: (loss|grad_norm) is nan.*max_grad_norm"):
        train(run_argv("--max_steps", "6", output_dir=tmp_path / "nan"))
    assert len(calls) == 3  # stopped at once, not after the remaining steps


def test_rows_longer_than_max_length_are_left_out_and_counted(
    train, run_argv, tiny_model_dir, sft_dir, tmp_path, caplog
):
    """A row TRL would cut at its end loses its verdict: it is left out of training, counted and reported."""
    import datasets
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = datasets.load_from_disk(str(sft_dir / "sft"))["train"]
    lengths = [len(tokenizer.apply_chat_template(r["messages"], return_dict=True)["input_ids"]) for r in rows]
    cut = sorted(lengths)[len(lengths) // 2]
    too_long = sum(n > cut for n in lengths)
    assert 0 < too_long < len(rows)  # the fixture's rows differ in length
    with caplog.at_level("WARNING", logger="training.sft"):
        out = train(run_argv("--max_steps", "1", "--max_length", str(cut), output_dir=tmp_path / "cut"))
    summary = json.loads((out / "train_summary.json").read_text(encoding="utf-8"))
    assert summary["train_rows_too_long"] == too_long and summary["train_rows"] == len(rows) - too_long
    assert f"{too_long} training rows left out: longer than max_length={cut} tokens" in caplog.text


def test_a_max_length_that_fits_no_row_is_a_config_error(train, run_argv, tmp_path):
    from training.checks import ConfigError

    with pytest.raises(ConfigError, match="field 'max_length': expected a length that fits at least one training row"):
        train(run_argv("--max_length", "8", output_dir=tmp_path / "none"))
    assert not (tmp_path / "none" / "train_summary.json").exists()
