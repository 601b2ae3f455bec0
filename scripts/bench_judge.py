"""Benchmark the ``hf`` judge against a naive loop, on this machine, with SmolLM2-135M.

    python scripts/bench_judge.py                                   # 200 short (embedded) + 200 long (GPTFuzz)
    python scripts/bench_judge.py --n-short 40 --n-long 0 --out /tmp/bench.json   # a quick look
    python scripts/bench_judge.py --threads 1      # when other jobs share the cores (no thread spin-waits)

Both paths judge with the same weights in float32 and the same judge prompt (``--prompt``,
default ``criteria``: question, detailed criteria, verdict first, then a one-sentence explanation):

- ``naive``: one example at a time, ``model.generate`` (greedy) of the whole verdict JSON after the
  chat-templated prompt and the answer prefix ``{"verdict": "``, parsed with ``recipes.verdict``;
  fields cut to the project's default budget.
- ``hf``: the backend as a run uses it, given each category's examples in one call: the verdict
  read from the logits of the verdict words' first tokens in one forward pass, the category's
  system prefix computed once and its cache reused (and so is any longer prefix several examples
  share, such as a jailbreak template), length-sorted batches of ``--batch-size``.

Per-field budget (``recipes.prompts.FieldBudget``; characters, about 4 a token; the head (40 %)
and the tail of a long field are kept): the default is 1500 / 2000 / 600 characters (victim
prompt / response / context), about 375 / 500 / 150 tokens. Short rows fit it whole. On long
GPTFuzz rows the hf judge runs twice: at the default budget (the gain from the prefix cache, no
decoding and batching alone) and at ``--long-budget`` (default 600 / 800 characters, ~150 / 200
tokens: the gain from computing fewer tokens too); the agreement column shows what the tighter
budget costs in verdicts. The naive loop runs once, at the default budget, for both rows.

Reported per row: judgments/s of each path, the speed-up, agreement of the labels where the naive
loop produced a valid verdict, tokens computed per judgment, and the efficiency: tokens the model
computed per second x 2 x parameters, as a share of the float32 matmul rate measured in the same
run (before and after). On a machine shared with other jobs the rates move, so the hf judge runs
twice, before and after the naive loop (each time from empty caches), and its time is the mean.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from collections import defaultdict
from pathlib import Path


def measure_matmul_gflops(seconds: float = 3.0) -> float:
    """Best float32 matmul rate (GFLOP/s) over a few square sizes, as the machine reaches it now."""
    import torch

    best = 0.0
    for size in (512, 1024, 2048):
        a, b = torch.randn(size, size), torch.randn(size, size)
        torch.matmul(a, b)
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            torch.matmul(a, b)
            runs += 1
        elapsed = time.perf_counter() - start
        best = max(best, 2 * size**3 * runs / elapsed / 1e9)
    return best


def _by_category(examples: list[dict]) -> dict[str, list[dict]]:
    by_category: dict[str, list[dict]] = defaultdict(list)
    for example in examples:
        by_category[example["category"]].append(example)
    return by_category


def load_short(n: int, seed: int) -> list[dict]:
    """Embedded examples of every category, built with the data builders (balanced over categories)."""
    from recipes.builders import build_datasets, load_data_recipe

    built = build_datasets(load_data_recipe(Path(__file__).resolve().parents[1] / "recipes/data/quickstart.yaml"))
    examples = [e for split in built.splits.values() for e in split]
    by_category = _by_category(examples)
    rng = random.Random(seed)
    per = -(-n // len(by_category))
    chosen = []
    for name in sorted(by_category):
        rows = sorted(by_category[name], key=lambda e: e["id"])
        rng.shuffle(rows)
        chosen += rows[:per]
    return chosen


def load_long(n: int, seed: int, data_root: str) -> list[dict] | None:
    """GPTFuzz rows (jailbreak), read through the project's source loader; None when absent."""
    from recipes.builders import build_datasets, load_data_recipe

    if not (Path(data_root) / "gptfuzz").is_dir():
        return None
    recipe = load_data_recipe(Path(__file__).resolve().parents[1] / "recipes/data/gptfuzz.yaml")
    built = build_datasets(recipe, data_root=data_root)
    examples = sorted((e for split in built.splits.values() for e in split), key=lambda e: e["id"])
    random.Random(seed).shuffle(examples)
    return examples[:n]


def build_fast_judge(loaded, prompt: str, budget, batch_size: int):
    """The hf backend as a run builds it, on the already loaded model."""
    from evaluation.backends.hf import HFJudge
    from evaluation.judges import JudgeSpec

    spec = JudgeSpec("smollm2-135m", prompt=prompt, batch_size=batch_size, options={"budget": vars(budget)})
    return HFJudge(spec, loaded=loaded)


def run_naive(loaded, examples: list[dict], category, prompt: str, budget, max_new_tokens: int, bar) -> tuple:
    """One example at a time, ``generate`` of the whole verdict JSON; returns verdicts by id and tokens."""
    import torch

    from evaluation.backends.hf_loading import stop_token_ids
    from recipes.chat import render_chat
    from recipes.prompts import render_prompt
    from recipes.verdict import parse_verdict

    model, tokenizer = loaded.model, loaded.tokenizer
    stops = stop_token_ids(tokenizer, model)
    results, tokens = {}, 0
    with torch.inference_mode():
        for example in examples:
            rendered = render_prompt(prompt, category, example, budget=budget)
            answer_prefix = rendered.template.answer_prefix
            text = render_chat(tokenizer, rendered.messages, answer_prefix)
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=tokenizer.pad_token_id,
            )
            new = out[0, ids.shape[1] :]
            tokens += ids.shape[1] + max(len(new) - 1, 0)
            answer = answer_prefix + tokenizer.decode(new, skip_special_tokens=True)
            results[example["id"]] = parse_verdict(
                answer, category.positive, category.negative, verdict_first=rendered.template.verdict_first
            )
            bar.update(1)
    return results, tokens


def run_fast(loaded, examples: list[dict], prompt: str, budget, batch_size: int) -> tuple[dict, float, int]:
    """A fresh hf judge (empty caches) over every category in one call each: results, seconds, tokens."""
    from recipes.categories import load_category

    judge = build_fast_judge(loaded, prompt, budget, batch_size)
    by_category = _by_category(examples)
    results, tokens = {}, 0
    start = time.perf_counter()
    for name, rows in by_category.items():
        for result in judge.judge(rows, load_category(name)):
            results[result.example_id] = result
            tokens += result.tokens
    return results, time.perf_counter() - start, tokens


def bench_kind(loaded, kind: str, examples: list[dict], args, naive_budget, fast_budgets: dict, params, peak) -> list:
    """Time the naive loop and the hf judge (one per budget) on the same examples.

    The hf judge runs twice, before and after the naive loop, each time from empty caches, and its
    time is the mean of the two, so that load from other processes on a shared machine falls on
    both paths alike. Both runs must give the same labels.
    """
    from tqdm.auto import tqdm

    from recipes.categories import load_category

    before = {name: run_fast(loaded, examples, args.prompt, b, args.batch_size) for name, b in fast_budgets.items()}
    naive, naive_s, naive_tokens = {}, 0.0, 0
    by_category = _by_category(examples)
    with tqdm(total=len(examples), desc=f"{kind}: naive loop", unit="judgment") as bar:
        for name, rows in by_category.items():
            category = load_category(name)
            start = time.perf_counter()
            verdicts, tokens = run_naive(
                loaded, rows, category, args.prompt, naive_budget, args.naive_max_new_tokens, bar
            )
            naive_s += time.perf_counter() - start
            naive.update(verdicts)
            naive_tokens += tokens
    after = {name: run_fast(loaded, examples, args.prompt, b, args.batch_size) for name, b in fast_budgets.items()}
    n = len(examples)
    valid = [e["id"] for e in examples if naive[e["id"]].valid]

    def efficiency(tokens: int, seconds: float) -> float:
        return tokens / seconds * 2 * params / 1e9 / peak

    rows = []
    for budget_name in fast_budgets:
        fast, first_s, fast_tokens = before[budget_name]
        second, second_s, _ = after[budget_name]
        fast_s = (first_s + second_s) / 2
        same = sum(fast[i].label == second[i].label for i in fast)
        agree = sum(fast[i].label == naive[i].label for i in valid)
        rows.append(
            {
                "kind": kind,
                "hf_budget": budget_name,
                "n": n,
                "categories": len(by_category),
                "hf_judgments_per_s": n / fast_s,
                "naive_judgments_per_s": n / naive_s,
                "speedup": naive_s / fast_s,
                "naive_valid": len(valid),
                "agreement": agree / len(valid) if valid else float("nan"),
                "hf_runs_identical_labels": same / n,
                "hf_tokens_per_judgment": fast_tokens / n,
                "naive_tokens_per_judgment": naive_tokens / n,
                "hf_efficiency": efficiency(fast_tokens, fast_s),
                "naive_efficiency": efficiency(naive_tokens, naive_s),
                "hf_positive_rate": sum(r.label == 1 for r in fast.values()) / n,
                "seconds": {"hf_before": first_s, "hf_after": second_s, "naive": naive_s},
            }
        )
    return rows


def _budget(text: str):
    from recipes.prompts import FieldBudget

    prompt_chars, response_chars = (int(x) for x in text.split("/"))
    return FieldBudget(prompt_chars=prompt_chars, response_chars=response_chars)


def main(args: argparse.Namespace) -> dict:
    """Run the benchmark and print the table."""
    import torch

    from evaluation.backends.hf import load_causal_lm
    from recipes.prompts import FieldBudget

    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    loaded = load_causal_lm("smollm2-135m", dtype="float32")
    params = sum(p.numel() for p in loaded.model.parameters())
    peak = measure_matmul_gflops()
    default = FieldBudget()
    long_budget = _budget(args.long_budget)
    rows = []
    if args.n_short:
        examples = load_short(args.n_short, args.seed)
        rows += bench_kind(loaded, "short (embedded)", examples, args, default, {"default": default}, params, peak)
    if args.n_long:
        long = load_long(args.n_long, args.seed, args.data_root)
        if long is None:
            print(f"long rows skipped: no GPTFuzz data under {args.data_root}")
        else:
            budgets = {"default": default, args.long_budget: long_budget}
            rows += bench_kind(loaded, "long (GPTFuzz)", long, args, default, budgets, params, peak)
    peak_after = measure_matmul_gflops()
    report = {
        "model": "smollm2-135m",
        "parameters": params,
        "prompt": args.prompt,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "matmul_gflops": {"before": peak, "after": peak_after},
        "budgets": {"default (naive, short)": vars(default), "long hf": vars(long_budget)},
        "rows": rows,
    }
    print(
        f"\nSmolLM2-135M ({params / 1e6:.1f} M parameters), prompt '{args.prompt}', float32, "
        f"{torch.get_num_threads()} threads; fp32 matmul {peak:.0f} GFLOP/s before, {peak_after:.0f} after\n"
    )
    print(
        "| rows | hf budget (chars) | n | hf judg/s | naive judg/s | speed-up | agreement (naive valid) "
        "| tokens/judg hf / naive | efficiency hf / naive |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['kind']} | {r['hf_budget']} | {r['n']} | {r['hf_judgments_per_s']:.2f} "
            f"| {r['naive_judgments_per_s']:.2f} | {r['speedup']:.1f}x "
            f"| {r['agreement']:.1%} ({r['naive_valid']}/{r['n']}) "
            f"| {r['hf_tokens_per_judgment']:.0f} / {r['naive_tokens_per_judgment']:.0f} "
            f"| {r['hf_efficiency']:.0%} / {r['naive_efficiency']:.0%} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.out}")
    return report


def make_parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-short", type=int, default=200, help="embedded examples (spread over the categories)")
    parser.add_argument("--n-long", type=int, default=200, help="GPTFuzz examples (0: skip)")
    parser.add_argument("--prompt", default="criteria", help="a verdict-first template: basic, criteria, few_shot")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--long-budget", default="600/800", help="hf prompt/response characters on long rows")
    parser.add_argument("--naive-max-new-tokens", type=int, default=48, help="room for the whole verdict JSON")
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: torch's default); 1 on a machine shared with other jobs",
    )
    parser.add_argument("--out", help="also write the numbers as JSON here")
    return parser


if __name__ == "__main__":
    main(make_parser().parse_args())
