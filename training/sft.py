"""Fine-tune a judge with TRL's ``SFTTrainer``: LoRA, QLoRA or full, on one CPU or many GPUs.

# CPU quickstart (LoRA on smollm2-135m, embedded data)
```bash
judgeforge data build recipes/data/quickstart.yaml --out runs/data/quickstart
judgeforge train recipes/training/quickstart_cpu.yaml
```

# Override any field from the command line
```bash
judgeforge train recipes/training/quickstart_cpu.yaml --num_train_epochs 2 --lora_layers 12 --output_dir runs/qs2
```

# LoRA under DeepSpeed ZeRO-2 on a GPU node (full fine-tune: recipes/training/qwen2.5-7b_full_zero3.yaml)
```bash
accelerate launch --config_file training/accelerate/zero2.yaml -m training.sft \
    --config recipes/training/qwen2.5-7b_lora_zero2.yaml
```

The run folder (``output_dir``) ends up holding the adapter (or the full model), the tokenizer,
``README.md`` (model card), ``judge.json`` (what evaluation needs to load the judge) and
checkpoints; rerunning the same command resumes from the last complete checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any


__all__ = ["main", "make_parser"]

logger = logging.getLogger(__name__)


def _top_layer_targets(model_config: Any, targets: Any, lora_layers: int, trust_remote_code: bool) -> list[str]:
    """Full names of the modules LoRA should adapt in the top ``lora_layers`` layers.

    PEFT refuses ``layers_to_transform`` with ``all-linear``, so the names are listed instead. They
    come from a weightless (meta-device) copy of the model, so any architecture works and no
    weights are read twice.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from training.checks import ConfigError

    total = model_config.get_text_config().num_hidden_layers
    if lora_layers > total:
        raise ConfigError("<config>", "lora_layers", f"at most {total} (the model's layers)", lora_layers)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config, trust_remote_code=trust_remote_code)
    output = model.get_output_embeddings()
    wanted = [targets] if isinstance(targets, str) else list(targets or [])
    names = []
    for name, module in model.named_modules():
        index = next((int(part) for part in name.split(".") if part.isdigit()), None)
        if index is None or index < total - lora_layers or module is output:
            continue
        if "all-linear" in wanted:
            chosen = isinstance(module, torch.nn.Linear)
        else:
            chosen = any(name == t or name.endswith("." + t) for t in wanted)
        if chosen:
            names.append(name)
    if not names:
        raise ConfigError("<config>", "lora_target_modules", f"modules found in the top {lora_layers} layers", targets)
    return names


def _lora_config(model_args: Any, judge_args: Any, model_config: Any, trust_remote_code: bool) -> Any:
    """TRL's LoRA config from the model arguments, restricted to the top ``lora_layers`` layers."""
    from trl import get_peft_config

    from training.checks import ConfigError

    if not model_args.use_peft:
        if judge_args.lora_layers:
            raise ConfigError("<config>", "lora_layers", "use_peft: true (it picks the layers LoRA adapts)", False)
        return None
    config = get_peft_config(model_args)
    if judge_args.lora_layers:
        names = _top_layer_targets(
            model_config, model_args.lora_target_modules, judge_args.lora_layers, trust_remote_code
        )
        config = dataclasses.replace(config, target_modules=names)
    return config


def _start_wandb(judge_args: Any, training_args: Any, model_args: Any, data: Any, output_dir: Path) -> Any:
    """Open the W&B run with the whole config; a resumed run continues the same W&B run."""
    import wandb

    id_file = output_dir / "wandb_run_id"
    run_id = id_file.read_text(encoding="utf-8").strip() if id_file.is_file() else uuid.uuid4().hex[:8]
    id_file.write_text(run_id + "\n", encoding="utf-8")
    config = {
        "judgeforge": {
            "judge": dataclasses.asdict(judge_args),
            "model": dataclasses.asdict(model_args),
            "data": {
                "data_dir": judge_args.data_dir,
                "recipe_hash": data.card.get("recipe_hash"),
                "prompt_template": data.card.get("prompt_template"),
                "budget": data.card.get("budget"),
                "categories": data.categories,
                "verdict_words": data.verdict_words,
                "train_rows": len(data.train),
                "validation_rows": len(data.validation),
            },
        }
    }
    return wandb.init(
        project=judge_args.wandb_project,
        name=training_args.run_name or output_dir.name,
        tags=judge_args.wandb_tags,
        id=run_id,
        resume="allow",
        config=config,
    )


def _set_cpu_threads(threads: int | None, training_args: Any) -> None:
    """Apply ``cpu_threads``; warn when a busy CPU makes the default thread count slow."""
    import torch

    if training_args.device.type != "cpu":
        return
    if threads:
        torch.set_num_threads(threads)
        return
    cores, load = os.cpu_count() or 1, os.getloadavg()[0]
    if torch.get_num_threads() > 1 and load > cores:
        logger.warning(
            "the CPU is busy (load %.1f on %d cores): %d OpenMP threads will mostly wait for each other; "
            "--cpu_threads 1 is often several times faster on a shared machine",
            load,
            cores,
            torch.get_num_threads(),
        )


def _write_model_card(trainer: Any, output_dir: Path, card: Any, data: Any) -> None:
    trainer.create_model_card(
        model_name=output_dir.name, dataset_name=str(data.card.get("name") or ""), tags=["judgeforge", "judge"]
    )
    readme = output_dir / "README.md"
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in sorted(card.metrics.items()) if not k.startswith("f1_"))
    section = [
        "",
        "",
        "## judgeforge",
        "",
        f"A judge tuned from `{card.base_model}` with the `{card.prompt_template}` prompt "
        f"({'LoRA adapter' if card.adapter else 'full weights'}); data recipe hash `{card.data_recipe_hash}`.",
        "",
        "| category | positive | negative |",
        "|---|---|---|",
        *[f"| {c} | {w[0]} | {w[1]} |" for c, w in sorted(card.verdict_words.items())],
        "",
        f"Validation verdict metrics (fixed subset): {metrics or 'not computed'}; decision threshold "
        f"{card.threshold:.3f}. `judge.json` holds what evaluation needs to load this judge.",
        "",
    ]
    with open(readme, "a", encoding="utf-8") as handle:
        handle.write("\n".join(section))


def _write_outputs(
    trainer: Any,
    callback: Any,
    judge_args: Any,
    model_args: Any,
    data: Any,
    output_dir: Path,
    *,
    adapter: bool,
    resume: str | None,
    too_long: int,
) -> dict[str, float]:
    """Check the saved adapter, then write judge.json, the model card and a run summary (main process)."""
    from recipes.judge_card import JudgeCard
    from training.checks import check_saved_adapter

    if adapter:
        trainable = sum(1 for _, p in trainer.model.named_parameters() if p.requires_grad)
        check_saved_adapter(output_dir, expected_tensors=trainable)
    metrics = dict(callback.last.metrics) if callback is not None and callback.last else {}
    threshold, thresholds = 0.5, {}
    if callback is not None and callback.last is not None:
        callback.write_verdicts(output_dir / "validation_verdicts.jsonl")
        if judge_args.tune_threshold:
            threshold, metrics["f1_at_threshold"] = callback.threshold(judge_args.threshold_metric)
            if judge_args.threshold_per_category:
                thresholds = callback.thresholds_by_category(judge_args.threshold_metric)
    card = JudgeCard(
        base_model=model_args.model_name_or_path,
        prompt_template=data.card["prompt_template"],
        verdict_words=data.verdict_words,
        adapter=adapter,
        data_recipe_hash=data.card["recipe_hash"],
        budget=data.card.get("budget") or {},
        render=data.card.get("render") or "plain",
        metrics=metrics,
        threshold=threshold,
        thresholds=thresholds,
    )
    card.write(output_dir)
    _write_model_card(trainer, output_dir, card, data)
    summary = {
        "global_step": trainer.state.global_step,
        "resumed_from": resume,
        "train_rows": len(data.train),
        "train_rows_too_long": too_long,
        "verdict_metrics": metrics,
    }
    (output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s (verdict metrics %s)", output_dir, {k: round(v, 3) for k, v in metrics.items()})
    return metrics


def main(judge_args: Any, training_args: Any, model_args: Any) -> Path:
    """Train a judge and write the run folder; returns ``output_dir``.

    Everything that can be checked without training is checked first (output folder, QLoRA and
    DeepSpeed settings, the data set, the model name, LoRA layers, the chat template); then TRL
    trains, resuming from the last complete checkpoint in ``output_dir`` if there is one.
    """
    from trl import get_quantization_config

    from training.callbacks import VerdictMetricsCallback
    from training.chat_template import install_training_template
    from training.checks import (
        ConfigError,
        check_output_dir,
        check_quantization,
        last_complete_checkpoint,
        load_model_config,
        zero_stage,
    )
    from training.data import drop_overlong, ensure_data_dir, fixed_subset, load_sft_data
    from training.trainer import JudgeSFTTrainer
    from training.verdict_loss import verdict_token_ids

    # Checks that need no model weights.
    output_dir = check_output_dir(training_args.output_dir)
    _set_cpu_threads(judge_args.cpu_threads, training_args)
    stage = zero_stage(training_args)
    if stage is not None:
        logger.info("DeepSpeed ZeRO-%d on %d process(es)", stage, training_args.world_size)
    check_quantization(model_args, stage)
    if judge_args.cache_frozen_layers and not (model_args.use_peft and judge_args.lora_layers and stage != 3):
        got = {"use_peft": model_args.use_peft, "lora_layers": judge_args.lora_layers, "zero_stage": stage}
        raise ConfigError("<config>", "cache_frozen_layers", "use_peft with lora_layers, and no ZeRO-3", got)
    if judge_args.verdict_loss_only and training_args.padding_free:
        raise ConfigError("<config>", "verdict_loss_only", "padded batches (padding_free: false)", True)
    ensure_data_dir(judge_args.data_dir, judge_args.data_recipe, judge_args.data_root)
    data = load_sft_data(
        judge_args.data_dir,
        categories=judge_args.categories,
        categories_dirs=judge_args.categories_dirs,
        train_rows=judge_args.train_rows,
        seed=training_args.seed,
        sources=judge_args.sources,
        balance=judge_args.balance,
    )
    model_path, model_config = load_model_config(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
    )
    peft_config = _lora_config(model_args, judge_args, model_config, training_args.trust_remote_code)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        model_path, revision=model_args.model_revision, trust_remote_code=training_args.trust_remote_code
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    original_template = None
    if training_args.chat_template_path is None and training_args.assistant_only_loss:
        original_template = install_training_template(tokenizer, model_args.model_name_or_path)

    data.train, overlong = drop_overlong(data.train, tokenizer, training_args.max_length)
    if len(data.train) == 0:
        raise ConfigError(
            "<config>", "max_length", "a length that fits at least one training row", training_args.max_length
        )
    if overlong:
        logger.warning(
            "%d training rows left out: longer than max_length=%d tokens, their verdict would be cut off (raise"
            " max_length or lower the data recipe's budget); first: %s",
            len(overlong),
            training_args.max_length,
            ", ".join(overlong[:5]),
        )
    # The fixed validation subset: judged by the callback and, with eval_loss, scored for loss too.
    rows = min(judge_args.verdict_eval_rows or len(data.validation), len(data.validation))
    subset = data.validation.select(fixed_subset(data.validation["category"], rows, training_args.seed))
    callback = None
    if judge_args.verdict_eval_rows:
        callback = VerdictMetricsCallback(
            tokenizer,
            list(subset),
            data.verdict_words,
            max_length=training_args.max_length,
            batch_size=judge_args.verdict_eval_batch_size,
            table_rows=judge_args.verdict_table_rows,
        )
    evaluating = training_args.eval_strategy != "no"
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }
    logger.info(
        "training %s on %d rows (%s), judging %d validation rows",
        model_args.model_name_or_path,
        len(data.train),
        ", ".join(data.categories),
        len(subset) if callback else 0,
    )
    trainer = JudgeSFTTrainer(
        model=model_path,
        args=training_args,
        train_dataset=data.train.select_columns(["messages", "id"] if judge_args.consistency_weight else ["messages"]),
        eval_dataset=subset.select_columns(["messages"]) if evaluating else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        quantization_config=get_quantization_config(model_args),
        callbacks=[callback] if callback else None,
        answer_only_head=judge_args.answer_only_head,
        eval_loss=judge_args.eval_loss,
        cache_frozen_layers=judge_args.cache_frozen_layers,
        verdict_ids=verdict_token_ids(tokenizer, data.verdict_words) if judge_args.verdict_loss_only else None,
        consistency_weight=judge_args.consistency_weight,
    )
    if callback is not None:
        callback.trainer = trainer
    main_process = training_args.process_index == 0
    if main_process and "wandb" in (training_args.report_to or []):
        _start_wandb(judge_args, training_args, model_args, data, output_dir)

    resume = training_args.resume_from_checkpoint or last_complete_checkpoint(output_dir)
    if resume:
        logger.info("resuming from %s", resume)
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()

    # Final verdict metrics (and the threshold) for judge.json, unless the last evaluation was at this step.
    step = trainer.state.global_step
    if callback is not None and (callback.last is None or callback.last.step != step):
        if evaluating:
            trainer.evaluate()
        else:
            callback.judge(trainer.model, step, device=training_args.device)
        if trainer.frozen_cache is not None:
            logger.info("frozen layer cache: %d validation prompts replayed", trainer.frozen_cache.eval_hits)
    if original_template is not None:
        tokenizer.chat_template = original_template
    trainer.save_model(str(output_dir))

    metrics = {}
    if main_process:
        adapter = peft_config is not None
        metrics = _write_outputs(
            trainer,
            callback,
            judge_args,
            model_args,
            data,
            output_dir,
            adapter=adapter,
            resume=resume,
            too_long=len(overlong),
        )
    trainer.accelerator.wait_for_everyone()
    if main_process and "wandb" in (training_args.report_to or []):
        import wandb

        if wandb.run is not None:
            wandb.run.summary.update({f"final/{k}": v for k, v in metrics.items()})
            wandb.finish()
    trainer.end()
    return output_dir


def make_parser(subparsers: argparse._SubParsersAction | None = None, prog: str | None = None) -> Any:
    """The ``TrlParser`` over (JudgeArguments, JudgeSFTConfig, JudgeModelConfig)."""
    from trl import TrlParser

    from training.configs import JudgeArguments, JudgeModelConfig, JudgeSFTConfig

    dataclass_types = (JudgeArguments, JudgeSFTConfig, JudgeModelConfig)
    # No abbreviations: a misspelt flag must fail, not silently set the field it is a prefix of.
    if subparsers is not None:
        return subparsers.add_parser(
            "train", help="Fine-tune a judge", dataclass_types=dataclass_types, allow_abbrev=False
        )
    return TrlParser(dataclass_types, prog=prog, allow_abbrev=False)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    judge, sft, model = make_parser(prog="python -m training.sft").parse_args_and_config()
    main(judge, sft, model)
