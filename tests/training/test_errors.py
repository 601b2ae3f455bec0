"""Bad input fails with a clear error before training starts (no model weights are even loaded)."""

import pytest
import torch
from safetensors.torch import save_file

from recipes.schema import DataError
from training import checks
from training.checks import AdapterSaveError, ConfigError, check_quantization, check_saved_adapter
from training.configs import JudgeModelConfig


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail the test if anything tries to build the trainer (i.e. the error came too late)."""
    import training.trainer

    def refuse(*args, **kwargs):
        raise AssertionError("the trainer was built before the error")

    monkeypatch.setattr(training.trainer.JudgeSFTTrainer, "__init__", refuse)


def test_missing_model_folder(train, run_argv, tmp_path, no_model_loading):
    with pytest.raises(ConfigError, match="field 'model_name_or_path'.*no-such-model"):
        train(run_argv("--model_name_or_path", str(tmp_path / "no-such-model")))


def test_unknown_hub_id_while_offline(train, run_argv, no_model_loading, monkeypatch):
    # huggingface_hub reads HF_HUB_OFFLINE when first imported, before the autouse fixture sets it.
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="field 'model_name_or_path'.*nobody/not-a-judge"):
        train(run_argv("--model_name_or_path", "nobody/not-a-judge"))


def test_folder_without_config_json(train, run_argv, tmp_path, no_model_loading):
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(ConfigError, match="config.json"):
        train(run_argv("--model_name_or_path", str(tmp_path / "empty-model")))


def test_data_folder_that_is_not_an_sft_set(train, run_argv, tmp_path, no_model_loading):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "rows.csv").write_text("prompt,response,label\n", encoding="utf-8")
    with pytest.raises(DataError, match="data_card.json"):
        train(run_argv(data_dir=tmp_path / "raw"))


def test_missing_data_dir(train, run_argv, tiny_model_dir, tmp_path, no_model_loading, parse):
    argv = [a for a in run_argv() if a not in ("--data_dir",)]
    argv.remove(argv[argv.index("--output_dir") - 1])  # drop the data folder's value too
    with pytest.raises(DataError, match="field 'data_dir'"):
        train(argv)


def test_unwritable_output_folder(train, run_argv, tmp_path, no_model_loading):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    with pytest.raises(ConfigError, match="field 'output_dir': expected a writable folder"):
        train(run_argv(output_dir=blocker / "run"))


def test_lora_layers_beyond_the_model(train, run_argv, no_model_loading):
    with pytest.raises(ConfigError, match="field 'lora_layers': expected at most 2"):
        train(run_argv("--lora_layers", "5"))
    with pytest.raises(ConfigError, match="field 'lora_layers': expected use_peft: true"):
        train(run_argv("--lora_layers", "1", "--use_peft", "false"))


def test_qlora_without_a_gpu(train, run_argv, no_model_loading):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="field 'load_in_4bit': expected a CUDA GPU"):
        train(run_argv("--load_in_4bit", "true"))


def test_qlora_under_zero3_is_refused_with_reason_and_alternative(monkeypatch):
    monkeypatch.setattr(checks.torch.cuda, "is_available", lambda: True)
    args = JudgeModelConfig(model_name_or_path="x", load_in_4bit=True)
    with pytest.raises(ConfigError) as error:
        check_quantization(args, stage=3)
    message = str(error.value)
    assert "field 'load_in_4bit'" in message and "ZeRO-3 shards every parameter" in message
    assert "training/accelerate/zero2.yaml" in message and "load_in_4bit: false" in message
    with pytest.raises(ConfigError, match="use_peft: true"):
        check_quantization(JudgeModelConfig(model_name_or_path="x", load_in_4bit=True, use_peft=False), stage=None)


def test_empty_adapter_tensors_are_caught(tmp_path):
    (tmp_path / "adapter_config.json").write_text(
        '{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "task_type": "CAUSAL_LM"}',
        encoding="utf-8",
    )
    save_file({"base_model.model.q_proj.lora_A.weight": torch.zeros(0)}, str(tmp_path / "adapter_model.safetensors"))
    with pytest.raises(AdapterSaveError, match="empty.*stage3_gather_16bit_weights_on_model_save"):
        check_saved_adapter(tmp_path)
    save_file({"base_model.model.q_proj.lora_A.weight": torch.ones(4, 8)}, str(tmp_path / "adapter_model.safetensors"))
    assert check_saved_adapter(tmp_path) == 1
    with pytest.raises(AdapterSaveError, match="holds 1 tensors, expected 2"):
        check_saved_adapter(tmp_path, expected_tensors=2)
