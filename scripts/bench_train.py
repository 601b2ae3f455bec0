"""Training throughput: judgeforge's default SFT config against a plain TRL SFTTrainer with its defaults.

Usage:
    python scripts/bench_train.py                      # smollm2-135m, embedded quickstart data, 20 steps of 8
    python scripts/bench_train.py --steps 40 --threads 2 --eval-rows 151

Every trainer gets the same model (smollm2-135m), the same training rows, the same step count,
batch size, learning rate and seed, and runs in this one process, one after the other:

- ``trl``: ``trl.SFTTrainer`` with TRL's defaults (LoRA from ``ModelConfig(use_peft=True)``, loss
  on the whole sequence, activation checkpointing on, random batches, the LM head over every
  position) plus ``bf16=False``, without which TRL 1.16 cannot train on a CPU;
- ``judgeforge``: ``judgeforge train`` with its default config (LoRA all-linear on every layer,
  loss on the verdict only, the LM head only there, no activation checkpointing, length-grouped
  batches);
- ``judgeforge+top8``: the same plus ``lora_layers: 8`` (the CPU quickstart's option).

Throughput is training tokens (non-padding input tokens, TRL's ``num_tokens``) per second of
``train_runtime``. Afterwards every tuned adapter, and the untuned base, is judged by the same code
on the same fixed validation rows (verdict read from logits), so the F1 column compares like with
like. CPU timings are noisy when other jobs share the machine: the ratio is what to read.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch


def _build_data(out: Path) -> Path:
    from recipes.builders import build_from_file

    if not (out / "sft").is_dir():
        build_from_file(Path(__file__).resolve().parents[1] / "recipes" / "data" / "quickstart.yaml", out)
    return out


def _shared_args(args: argparse.Namespace, output_dir: Path) -> list[str]:
    return [
        *("--model_name_or_path", "smollm2-135m", "--data_dir", str(args.data), "--output_dir", str(output_dir)),
        *("--max_steps", str(args.steps), "--per_device_train_batch_size", str(args.batch_size)),
        *("--learning_rate", str(args.lr), "--seed", "42", "--train_rows", str(args.steps * args.batch_size)),
        *("--eval_strategy", "no", "--eval_on_start", "false", "--save_strategy", "no", "--report_to", "none"),
        *("--verdict_eval_rows", "0", "--logging_steps", "5"),
    ]


def _throughput(state: dict) -> tuple[int, float]:
    history = state["log_history"]
    tokens = max(entry.get("num_tokens", 0) for entry in history)
    runtime = next(entry["train_runtime"] for entry in history if "train_runtime" in entry)
    return int(tokens), float(runtime)


def _run_judgeforge(args: argparse.Namespace, name: str, extra: list[str]) -> dict:
    from training.sft import main, make_parser

    out = args.out / name
    main(*make_parser().parse_args_and_config(_shared_args(args, out) + extra))
    tokens, runtime = _throughput(json.loads((out / "trainer_state.json").read_text(encoding="utf-8")))
    return {"name": name, "adapter": out, "tokens": tokens, "runtime": runtime}


def _run_trl(args: argparse.Namespace) -> dict:
    from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config

    from recipes.models import resolve_model
    from training.data import load_sft_data

    out = args.out / "trl"
    data = load_sft_data(args.data, train_rows=args.steps * args.batch_size, seed=42)
    config = SFTConfig(
        output_dir=str(out),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=42,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=5,
    )
    peft_config = get_peft_config(ModelConfig(model_name_or_path="smollm2-135m", use_peft=True))
    trainer = SFTTrainer(
        model=resolve_model("smollm2-135m"),
        args=config,
        train_dataset=data.train.select_columns(["messages"]),
        peft_config=peft_config,
    )
    trainer.train()
    trainer.save_model(str(out))
    tokens, runtime = _throughput({"log_history": trainer.state.log_history})
    return {"name": "trl", "adapter": out, "tokens": tokens, "runtime": runtime}


def _verdict_f1(args: argparse.Namespace, adapter: Path | None) -> dict:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recipes.models import resolve_model
    from training.data import fixed_subset, load_sft_data
    from training.verdicts import compute_verdict_metrics, judge_probes, prepare_probes

    base = resolve_model("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    data = load_sft_data(args.data)
    rows = data.validation.select(fixed_subset(data.validation["category"], args.eval_rows, 42))
    probes = prepare_probes(tokenizer, list(rows), data.verdict_words, max_length=1024)
    scores = judge_probes(model, probes, batch_size=8, pad_id=tokenizer.pad_token_id)
    return compute_verdict_metrics([p.label for p in probes], scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="SFT data folder (default: build the quickstart data into --out)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_train"), help="work folder")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--eval-rows", type=int, default=64, help="fixed validation rows judged for F1")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (same for every trainer)")
    parser.add_argument("--skip-trl", action="store_true", help="only the judgeforge rows")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    args.data = args.data or _build_data(args.out / "data")

    started = time.time()
    runs = [] if args.skip_trl else [_run_trl(args)]
    runs.append(_run_judgeforge(args, "judgeforge", []))
    runs.append(_run_judgeforge(args, "judgeforge+top8", ["--lora_layers", "8"]))
    base = _verdict_f1(args, None)
    for run in runs:
        run["metrics"] = _verdict_f1(args, run["adapter"])

    reference = next((r for r in runs if r["name"] == "trl"), None)
    print(
        f"\nsmollm2-135m, {args.steps} steps x {args.batch_size} rows, lr {args.lr}, "
        f"{torch.get_num_threads()} thread(s); F1 on {args.eval_rows} fixed validation rows\n"
    )
    print("| trainer | tokens | train s | tokens/s | vs trl | val F1 | val AUROC |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| base (untuned) | | | | | {base.get('f1', float('nan')):.3f} | {base.get('auroc', float('nan')):.3f} |")
    for run in runs:
        speed = run["tokens"] / run["runtime"]
        ratio = f"{speed / (reference['tokens'] / reference['runtime']):.2f}x" if reference else "-"
        metrics = run["metrics"]
        print(
            f"| {run['name']} | {run['tokens']} | {run['runtime']:.0f} | {speed:.0f} | {ratio} | "
            f"{metrics.get('f1', float('nan')):.3f} | {metrics.get('auroc', float('nan')):.3f} |"
        )
    summary = {r["name"]: {k: v for k, v in r.items() if k != "adapter"} for r in runs} | {"base": base}
    (args.out / "bench_train.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\ntotal {time.time() - started:.0f} s; details in {args.out / 'bench_train.json'}")


if __name__ == "__main__":
    main()
