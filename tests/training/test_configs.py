import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from recipes.models import fast_bf16
from training.configs import JudgeArguments, JudgeModelConfig, JudgeSFTConfig


ROOT = Path(__file__).resolve().parents[2]
TRAINING_RECIPES = sorted((ROOT / "recipes" / "training").glob("*.yaml"))
ACCELERATE_CONFIGS = sorted((ROOT / "training" / "accelerate").glob("*.yaml"))
FIELDS = {f.name for cls in (JudgeArguments, JudgeSFTConfig, JudgeModelConfig) for f in dataclasses.fields(cls)}


def _without_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_judge_defaults_differ_from_trl_where_documented(tmp_path, monkeypatch):
    _without_cuda(monkeypatch)  # the CPU defaults (on a GPU machine too); the GPU's are tested below
    args = JudgeSFTConfig(output_dir=str(tmp_path))
    assert args.assistant_only_loss is True
    # bf16 exactly where it is native (TRL's own default, always on, fails on CPUs without it).
    assert args.bf16 is fast_bf16("cpu") and args.use_cpu is fast_bf16("cpu")
    assert args.activation_checkpointing is False and args.gradient_checkpointing is False
    assert args.train_sampling_strategy == "group_by_length"
    assert args.eval_on_start is True and args.learning_rate == 2e-4
    assert JudgeSFTConfig(output_dir=str(tmp_path), eval_strategy="no").eval_on_start is False
    deepspeed = JudgeSFTConfig(output_dir=str(tmp_path), deepspeed=str(ROOT / "training/deepspeed/zero2.json"))
    assert deepspeed.bf16 is False and deepspeed.use_cpu is False  # DeepSpeed on a CPU refuses use_cpu
    model = JudgeModelConfig(model_name_or_path="x")
    assert model.use_peft is True and model.lora_target_modules == "all-linear"
    for name in ("assistant_only_loss", "bf16", "gradient_checkpointing", "train_sampling_strategy", "eval_strategy"):
        assert name in JudgeSFTConfig.__doc__
    for name in ("use_peft", "lora_target_modules"):
        assert name in JudgeModelConfig.__doc__


def test_every_judgeforge_field_has_help():
    for cls in (JudgeArguments, JudgeSFTConfig, JudgeModelConfig):
        declared = cls.__dict__["__annotations__"]
        for f in dataclasses.fields(cls):
            if f.name in declared:
                assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"


@pytest.mark.parametrize("recipe", TRAINING_RECIPES, ids=lambda p: p.name)
def test_training_recipes_use_known_keys_only(recipe):
    data = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    unknown = sorted(set(data) - FIELDS)
    assert not unknown, f"{recipe.name}: unknown keys {unknown}"
    assert data["model_name_or_path"] and data["data_dir"] and data["output_dir"]
    assert not Path(data["output_dir"]).is_absolute() and not Path(data["data_dir"]).is_absolute()


def test_quickstart_recipe_parses_with_overrides(parse):
    recipe = ROOT / "recipes" / "training" / "quickstart_cpu.yaml"
    judge, sft, model = parse(["--config", str(recipe), "--learning_rate", "1e-3", "--lora_layers", "4"])
    assert model.model_name_or_path == "smollm2-135m" and model.use_peft
    assert sft.learning_rate == 1e-3 and judge.lora_layers == 4
    assert sft.bf16 is fast_bf16("cpu") and sft.assistant_only_loss


def test_unknown_config_key_is_rejected(parse, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("model_name_or_path: smollm2-135m\nlearning_rat: 0.1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="learning_rat"):
        parse(["--config", str(config)])
    with pytest.raises(ValueError, match="--lora_layer"):
        parse(["--lora_layer", "3"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("lora_layers", 0, id="no_layers"),
        pytest.param("train_rows", -5, id="negative_rows"),
        pytest.param("verdict_eval_rows", -1, id="negative_eval_rows"),
        pytest.param("verdict_eval_batch_size", 0, id="zero_batch"),
        pytest.param("threshold_metric", "accuracy", id="unknown_threshold_metric"),
    ],
)
def test_judge_arguments_reject_bad_values(field, value):
    with pytest.raises(ValueError, match=f"field '{field}'"):
        JudgeArguments(**{field: value})


@pytest.mark.parametrize("config", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_configs_point_at_deepspeed_files(config):
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    assert data["distributed_type"] == "DEEPSPEED"
    ds_file = ROOT / data["deepspeed_config"]["deepspeed_config_file"]
    ds = json.loads(ds_file.read_text(encoding="utf-8"))
    stage = ds["zero_optimization"]["stage"]
    assert stage == (2 if "zero2" in config.name else 3)
    assert data["deepspeed_config"]["zero3_init_flag"] is (stage == 3)
    if "offload" in config.name:
        assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    if data["num_machines"] > 1:
        assert {"main_process_ip", "main_process_port", "machine_rank"} <= set(data)


def test_deepspeed_zero3_configs_gather_weights_on_save():
    for path in sorted((ROOT / "training" / "deepspeed").glob("*.json")):
        ds = json.loads(path.read_text(encoding="utf-8"))
        if ds["zero_optimization"]["stage"] == 3:
            # Without it a ZeRO-3 save holds empty partitions instead of weights.
            assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True, path.name
        assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["bf16"]["enabled"] == "auto"


@pytest.mark.gpu
def test_gpu_defaults_are_bf16_on_the_gpu(tmp_path, monkeypatch):
    assert fast_bf16("cuda")  # the GPUs this is run on (H100, H200) compute bf16 natively
    args = JudgeSFTConfig(output_dir=str(tmp_path))
    assert args.bf16 is True and args.use_cpu is False
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert JudgeSFTConfig(output_dir=str(tmp_path)).bf16 is True


def test_accelerate_launched_deepspeed_stays_in_float32_on_a_cpu(tmp_path, monkeypatch):
    _without_cuda(monkeypatch)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    args = JudgeSFTConfig(output_dir=str(tmp_path))
    assert args.bf16 is False and args.use_cpu is False
