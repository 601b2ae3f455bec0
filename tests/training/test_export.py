import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from recipes.judge_card import JudgeCard
from recipes.schema import DataError
from training.export import export_model


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, sft_dir, tmp_path_factory):
    from training.sft import main, make_parser

    out = tmp_path_factory.mktemp("lora-run")
    argv = [
        *("--model_name_or_path", tiny_model_dir, "--data_dir", str(sft_dir), "--output_dir", str(out)),
        *("--max_steps", "3", "--per_device_train_batch_size", "4", "--learning_rate", "1e-2"),
        *("--eval_strategy", "no", "--eval_on_start", "false", "--save_strategy", "steps", "--save_steps", "2"),
        *("--report_to", "none", "--verdict_eval_rows", "4"),
    ]
    return main(*make_parser().parse_args_and_config(argv))


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_merge_gives_the_same_judge_without_peft(lora_run, tiny_model_dir, tmp_path):
    out = export_model(lora_run, tmp_path / "merged", merge=True)
    assert out == tmp_path / "merged"
    assert (out / "model.safetensors").is_file() and not (out / "adapter_model.safetensors").exists()
    card = JudgeCard.read(out)
    assert card.adapter is False and card.base_model == tiny_model_dir
    assert card.verdict_words == JudgeCard.read(lora_run).verdict_words
    ids = torch.tensor([[1, 5, 9, 42, 7, 3]])
    merged = _logits(AutoModelForCausalLM.from_pretrained(out), ids)
    adapted = _logits(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), lora_run), ids)
    assert torch.allclose(merged, adapted, atol=1e-4)
    assert (
        AutoTokenizer.from_pretrained(out).chat_template == AutoTokenizer.from_pretrained(tiny_model_dir).chat_template
    )


def test_export_without_merge_copies_the_judge_and_not_the_checkpoints(lora_run, tmp_path):
    out = export_model(lora_run, tmp_path / "plain", merge=False)
    names = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "judge.json", "tokenizer.json"} <= names
    assert not any(name.startswith("checkpoint-") for name in names)
    assert JudgeCard.read(out).adapter is True


def test_export_refuses_a_non_empty_target_and_a_folder_without_judge_json(lora_run, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(DataError, match="field 'out'"):
        export_model(lora_run, tmp_path / "busy", merge=True)
    assert (tmp_path / "busy" / "keep.txt").read_text(encoding="utf-8") == "mine"
    with pytest.raises(DataError, match="judge.json"):
        export_model(tmp_path / "busy", tmp_path / "elsewhere", merge=True)
