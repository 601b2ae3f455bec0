"""``judgeforge <command>``: wires the layers together; each command's work lives in its package.

Heavy imports happen inside the command handlers so that ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence


def _data_build(args: argparse.Namespace) -> int:
    from recipes.builders import build_from_file

    card = build_from_file(
        args.recipe,
        args.out,
        data_root=args.data_root,
        on_bad_row=args.on_bad_row,
        categories_dirs=args.categories_dir,
    )
    print(card.to_markdown())
    print(f"\nwrote {args.out}")
    return 0


def _data_show(args: argparse.Namespace) -> int:
    from recipes.builders import DataCard

    print(DataCard.read(args.dir).to_markdown())
    return 0


def _prompts_show(args: argparse.Namespace) -> int:
    from recipes.categories import load_category
    from recipes.prompts import render_prompt, render_review_prompt

    category = load_category(args.category, args.categories_dir)
    exemplar = category.exemplars[0] if category.exemplars else None
    example = {
        "prompt": args.victim_prompt or (exemplar.prompt if exemplar else "<the victim's prompt>"),
        "response": args.victim_response or (exemplar.response if exemplar else "<the victim's response>"),
    }
    if args.prompt == "second_level":
        first = render_prompt("basic", category, example)
        rendered = render_review_prompt(first, f'{{"verdict": "{category.positive}"}}')
    else:
        rendered = render_prompt(args.prompt, category, example)
    for message in rendered.messages:
        print(f"----- {message['role']} -----\n{message['content']}\n")
    prefix = rendered.template.answer_prefix
    print(f"----- answer ----- starts with {prefix!r}; choices {rendered.choices}" if prefix else "----- answer -----")
    return 0


def _train(args: argparse.Namespace, rest: list[str]) -> int:
    from training.sft import main, make_parser

    parser = make_parser()
    argv = (["--config", args.config] if args.config else []) + rest
    main(*parser.parse_args_and_config(argv))
    return 0


def _export(args: argparse.Namespace) -> int:
    from training.export import export_model

    out = export_model(args.run_dir, args.out, merge=args.merge)
    print(f"exported {args.run_dir} -> {out}")
    return 0


def _scale(args: argparse.Namespace):
    """The scale-down flags as one value, built once here at the edge."""
    from evaluation.scale import ScaleDown

    return ScaleDown(limit=args.limit, models=tuple(args.models or ()), max_new_tokens=args.max_new_tokens)


def _eval(args: argparse.Namespace) -> int:
    from evaluation.runs import run_eval_file

    line = run_eval_file(args.recipe, args.out, data_root=args.data_root, scale=_scale(args))
    if line:
        print(line)
    return 0


def _judge(args: argparse.Namespace) -> int:
    from evaluation.judge_file import judge_file, spec_for
    from evaluation.transcripts import Columns

    options = _key_values(args.option, "--option")
    if args.base_url:
        options["base_url"] = args.base_url
    spec = spec_for(
        args.judge,
        args.prompt,
        args.batch_size,
        backend=args.backend,
        options=options,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
    )
    columns = Columns(
        prompt=args.prompt_column,
        response=args.response_column,
        id=args.id_column,
        context=args.context_column,
        label=args.label_column,
        keep=tuple(args.keep_columns or ()),
    )
    print(
        judge_file(
            judge=spec,
            category=args.category,
            input_path=args.input,
            out_path=args.out,
            columns=columns,
            categories_dirs=args.categories_dir,
            batch_size=args.batch_size,
        )
    )
    return 0


def _key_values(pairs: list[str] | None, flag: str) -> dict:
    """``KEY=VALUE`` flags as a mapping, each value read as YAML (``3`` is a number, ``{a: 1}`` a mapping)."""
    import yaml

    from recipes.schema import DataError

    values = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise DataError("<command line>", None, flag, "KEY=VALUE", pair)
        values[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return values


def _report(args: argparse.Namespace) -> int:
    from evaluation.report import write_report

    paths = write_report(args.dir, wandb_project=args.wandb_project)
    for path in paths:
        print(path)
    return 0


def _run(args: argparse.Namespace) -> int:
    from judgeforge.pipeline import run_pipeline

    return run_pipeline(
        args.recipe, out_dir=args.out, data_root=args.data_root, dry_run=args.dry_run, scale=_scale(args)
    )


def _recipe_keys(args: argparse.Namespace) -> int:
    from judgeforge.recipe_keys import RECIPE_KINDS, describe

    print(f"{args.kind} recipe keys ({RECIPE_KINDS[args.kind]().__name__}):")
    print(describe(RECIPE_KINDS[args.kind]()))
    return 0


def make_parser() -> argparse.ArgumentParser:
    """The ``judgeforge`` argument parser (``train`` forwards its own flags to TRL's parser)."""
    parser = argparse.ArgumentParser(prog="judgeforge", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="build and inspect judgment data sets").add_subparsers(
        dest="data_command", required=True
    )
    build = data.add_parser("build", help="build the SFT and evaluation data sets from a data recipe")
    build.add_argument("recipe", help="data recipe YAML (e.g. recipes/data/quickstart.yaml)")
    build.add_argument("--out", required=True, help="output folder")
    build.add_argument("--data-root", help="folder that relative source paths are read from (e.g. ../shared/data)")
    build.add_argument("--on-bad-row", choices=["error", "skip"], default="error", help="stop or skip and count")
    build.add_argument("--categories-dir", action="append", help="extra folder of category YAML files")
    build.set_defaults(handler=_data_build)
    show = data.add_parser("show", help="print the data card of a built data set")
    show.add_argument("dir")
    show.set_defaults(handler=_data_show)

    prompts = commands.add_parser("prompts", help="render judge prompts").add_subparsers(
        dest="prompts_command", required=True
    )
    pshow = prompts.add_parser("show", help="print a rendered prompt, as a judge sees it")
    pshow.add_argument("--category", required=True)
    pshow.add_argument("--prompt", required=True, help="basic, criteria, cot, few_shot, score or second_level")
    pshow.add_argument("--victim-prompt", help="text of the victim's prompt (default: the category's exemplar)")
    pshow.add_argument("--victim-response", help="text of the victim's response")
    pshow.add_argument("--categories-dir", action="append")
    pshow.set_defaults(handler=_prompts_show)

    train = commands.add_parser("train", help="fine-tune a judge with TRL (flags after CONFIG go to TRL's parser)")
    train.add_argument("config", nargs="?", help="training config YAML (e.g. recipes/training/quickstart_cpu.yaml)")
    train.set_defaults(handler=_train, passthrough=True)

    export = commands.add_parser("export", help="export a tuned judge (optionally merging its LoRA adapter)")
    export.add_argument("run_dir")
    export.add_argument("--out", required=True)
    export.add_argument("--merge", action="store_true", help="merge the LoRA adapter into the base weights")
    export.set_defaults(handler=_export)

    evaluate = commands.add_parser("eval", help="run an evaluation recipe (resumable)")
    evaluate.add_argument("recipe")
    evaluate.add_argument("--out", required=True)
    evaluate.add_argument("--data-root")
    evaluate.add_argument("--limit", type=int, help="at most this many examples per category")
    evaluate.add_argument("--models", nargs="+", help="replace the recipe's judge models")
    evaluate.add_argument("--max-new-tokens", type=int, help="cap every judge's and reviewer's generation budget")
    evaluate.set_defaults(handler=_eval)

    judge = commands.add_parser("judge", help="judge a CSV or JSON Lines file of victim transcripts")
    judge.add_argument(
        "--judge", "--model", dest="judge", required=True,
        help="model id, local folder, alias, tuned-judge folder, guard model, or a server's model name",
    )  # fmt: skip
    judge.add_argument("--backend", help="a registered backend: hf, openai, vllm, guard ... (default: by --judge)")
    judge.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (--backend openai)")
    judge.add_argument("--option", action="append", metavar="KEY=VALUE", help="a backend option (repeatable)")
    judge.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    judge.add_argument("--max-new-tokens", type=int, default=128, help="generation budget")
    judge.add_argument("--prompt", default="basic", help="judge prompt template")
    judge.add_argument("--category", required=True)
    judge.add_argument("--input", required=True, help="CSV or JSON Lines transcripts")
    judge.add_argument("--out", required=True, help="verdicts: .jsonl, or .csv (chosen by the extension)")
    judge.add_argument("--prompt-column", default="prompt", help="the victim's prompt (text or chat messages)")
    judge.add_argument("--response-column", default="response")
    judge.add_argument("--id-column", default="id")
    judge.add_argument("--context-column", help="what the judgment needs besides the transcript (secret, reference)")
    judge.add_argument("--label-column", help="human labels (1/0, true/false or the verdict words): print metrics")
    judge.add_argument("--keep-columns", nargs="+", metavar="COLUMN", help="input columns copied beside each verdict")
    judge.add_argument("--batch-size", type=int, default=8)
    judge.add_argument("--categories-dir", action="append")
    judge.set_defaults(handler=_judge)

    report = commands.add_parser("report", help="write report.md / report.html / plots for an evaluation folder")
    report.add_argument("dir")
    report.add_argument("--wandb-project", help="also log the report to this W&B project")
    report.set_defaults(handler=_report)

    recipe = commands.add_parser("recipe", help="describe recipe files").add_subparsers(
        dest="recipe_command", required=True
    )
    keys = recipe.add_parser("keys", help="every key a recipe kind accepts, with its type, default and help")
    keys.add_argument("kind", choices=["run", "data", "job", "source"])
    keys.set_defaults(handler=_recipe_keys)

    run = commands.add_parser("run", help="the main job: build data, tune, evaluate, report")
    run.add_argument("recipe", nargs="?", help="run recipe (default: the CPU quickstart)")
    run.add_argument("--out", help="run folder (default: runs/<recipe name>)")
    run.add_argument("--data-root", help="folder of the shared real data (e.g. ../shared/data)")
    run.add_argument("--dry-run", action="store_true", help="print the plan and check every name, run nothing")
    run.add_argument("--models", nargs="+", help="scale down: replace the recipe's judge models")
    run.add_argument("--limit", type=int, help="scale down: at most this many examples per category")
    run.add_argument("--max-new-tokens", type=int, help="scale down: cap every judge's and reviewer's generation")
    run.set_defaults(handler=_run)
    return parser


def dispatch(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run its command; errors propagate (what :func:`main` reports)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(args, "passthrough", False):
        return args.handler(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args.handler(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``judgeforge`` console script.

    Bad input and configuration (``DataError`` and other ``ValueError``, a missing or unreadable
    file, malformed YAML) are one line on stderr and exit code 2; Ctrl-C is exit code 130. The
    traceback is printed too with ``--log-level DEBUG``; anything else is a bug and raises.
    """
    import yaml

    argv = list(sys.argv[1:] if argv is None else argv)
    level = argparse.ArgumentParser(add_help=False)
    level.add_argument("--log-level", default="INFO")
    debug = level.parse_known_args(argv)[0].log_level.upper() == "DEBUG"
    try:
        return dispatch(argv)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("judgeforge: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, yaml.YAMLError) as error:
        if debug:
            traceback.print_exc()
        print(f"judgeforge: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
