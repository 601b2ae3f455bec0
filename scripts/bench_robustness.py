"""Measure judges under victim-side attacks: the robustness table (judge x attack) on built data.

    # the tuned judge, two prompted judges and the reference judges on the quickstart's test split
    python scripts/bench_robustness.py --data runs/qs/data --tuned runs/qs/judges/smollm2-135m-lora \
        --prompts basic criteria --reference tfidf refusal_phrases --limit 10 --out /tmp/rob.jsonl
    # only the plain-text note, every variant, on every test example
    python scripts/bench_robustness.py --data runs/qs/data --tuned DIR --attacks evaluator_note --variants 0 --limit 0

Each judge judges the clean examples (``--limit`` per category, stratified; 0 = all) and their
perturbed copies (``--variants`` per attack per example, 0 = every variant), with the settings a run
gives it: prompted judges see the data card's field budget and few-shot exemplars from the train
split, reference judges fit on the train split, a tuned judge uses its ``judge.json`` (template,
render, budget, threshold). Records go to ``--out`` (JSON lines); a rerun with the same ``--out``
skips the judges already there, so judges can be added one by one. The table is computed by
:mod:`evaluation.robustness` (F1 from :mod:`evaluation.metrics`), also per variant with
``--by-variant``. Heavy: wrap it in ``flock /work/logs/long.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import defaultdict
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="folder written by `judgeforge data build`")
    parser.add_argument("--split", default="test")
    parser.add_argument("--tuned", nargs="*", default=[], help="tuned-judge folders (hold judge.json)")
    parser.add_argument("--tuned-names", nargs="*", default=[], help="display names of the tuned judges")
    parser.add_argument("--model", default="smollm2-135m", help="model of the prompted judges")
    parser.add_argument("--prompts", nargs="*", default=[], help="prompted judges: basic criteria few_shot score cot")
    parser.add_argument("--reference", nargs="*", default=[], help="tfidf refusal_phrases")
    parser.add_argument("--attacks", nargs="*", default=None, help="attack names (default: the suite)")
    parser.add_argument("--variants", type=int, default=1, help="variants per attack per example (0 = all)")
    parser.add_argument("--limit", type=int, default=10, help="clean examples per category (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--few-shot", type=int, default=4)
    parser.add_argument("--out", required=True, help="records (JSON lines), appended per judge")
    parser.add_argument("--by-variant", action="store_true", help="also a table per attack variant")
    parser.add_argument("--per-category", action="store_true", help="also a table per category")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default; 1 on a shared CPU)")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16"],
        help="local judges' precision (auto: bfloat16 where native); float32 removes bf16 rounding from the flips",
    )
    return parser.parse_args()


def judge_specs(args: argparse.Namespace, budget: dict | None) -> list:
    """The judges to measure, as a run would build them."""
    from evaluation.judges import JudgeSpec

    specs = []
    dtype = {"dtype": args.dtype} if args.dtype != "auto" else {}
    names = list(args.tuned_names) + [""] * len(args.tuned)
    for folder, name in zip(args.tuned, names):
        specs.append(JudgeSpec(model=folder, backend="hf", name=name, batch_size=args.batch_size, options=dtype))
    for prompt in args.prompts:
        options = dtype | ({"budget": dict(budget)} if budget else {})
        specs.append(JudgeSpec(model=args.model, prompt=prompt, backend="hf", batch_size=args.batch_size,
                               max_new_tokens=16, options=options | {"seed": args.seed}))  # fmt: skip
    for model in args.reference:
        specs.append(JudgeSpec(model=model, backend="reference"))
    return specs


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from evaluation.judges import build_judge
    from evaluation.robustness import (
        RobustnessConfig,
        RobustnessRow,
        compute_robustness_rows,
        judge_suite,
        robustness_table,
        select_clean,
    )
    from recipes.attacks import SUITE_ATTACKS, variant_name
    from recipes.builders import DataCard, load_examples, sample_exemplars
    from recipes.categories import load_category

    card = DataCard.read(args.data)
    config = RobustnessConfig(
        attacks=tuple(args.attacks or SUITE_ATTACKS),
        variants=args.variants or None,
        limit=args.limit or None,
        seed=args.seed,
    )
    clean = select_clean(load_examples(args.data, args.split), config)
    train = load_examples(args.data, "train")
    by_category: dict[str, list[dict]] = defaultdict(list)
    for example in clean:
        by_category[example["category"]].append(example)
    out = Path(args.out)
    lines = out.read_text("utf-8").splitlines() if out.is_file() else []
    records = [json.loads(line) for line in lines if line.strip()]
    done = {r["judge"] for r in records}
    print(f"{len(clean)} clean examples ({args.split}), attacks {list(config.attacks)}, variants {config.variants}")
    for spec in judge_specs(args, card.budget):
        if spec.name in done:
            print(f"{spec.name}: in {out} already")
            continue
        start = time.perf_counter()
        judge = build_judge(spec, train_examples=train)
        mine = []
        for name, examples in sorted(by_category.items()):
            category = load_category(name)
            shots = sample_exemplars(train, name, args.few_shot, args.seed) if spec.prompt == "few_shot" else None
            mine += judge_suite(judge, category, examples, config, batch_size=spec.batch_size, exemplars=shots)
        with out.open("a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in mine)
        records += mine
        print(f"{spec.name}: {len(mine)} judgments in {time.perf_counter() - start:.0f} s")
        del judge
    rows = compute_robustness_rows(records, per_category=args.per_category)
    _print_table("", robustness_table(rows))
    if args.per_category:
        for name in sorted(by_category):
            _print_table(f"### {name}", robustness_table(rows, name))
    if args.by_variant:
        split = [dict(r, attack=variant_name(r["attack"], r["variant"])) if r.get("attack") else r for r in records]
        variant_rows: list[RobustnessRow] = compute_robustness_rows(split)
        _print_table("### per attack variant", robustness_table(variant_rows))


def _print_table(title: str, table) -> None:
    print("\n".join(["", title, *(table.grid_markdown() if table else ["(no attacked judge)"])]))


if __name__ == "__main__":
    main()
