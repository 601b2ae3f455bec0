"""``judgeforge run``: the main job, data -> tuned judges -> evaluation -> report, in one run folder.

A job recipe (``recipes/jobs/*.yaml``) names one recipe per stage::

    name: quickstart
    data: recipes/data/quickstart.yaml          # data recipe, built into <out>/data
    train:                                      # tuned judges, each trained into <out>/judges/<name>
      - name: smollm2-135m-lora
        config: recipes/training/quickstart_cpu.yaml
        cpu_config: null                        # used instead of `config` on a machine without CUDA
        accelerate_config: null                 # with CUDA: `accelerate launch --config_file` this
        args: {}                                # TRL/judgeforge flags on top of the config
    eval: recipes/runs/quickstart.yaml          # run recipe; data and tuned judges are filled in

Each stage writes into the run folder and records a fingerprint of its inputs in ``stages.json``;
rerunning the command reuses every stage whose inputs did not change (training resumes from its
last checkpoint, evaluation from its results store), so an interrupted job loses little.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from evaluation.store import write_atomically
from recipes.loader import Problems, non_empty, parse_into, read_yaml
from recipes.paths import PROJECT_ROOT, resolve_path
from recipes.schema import DataError


if TYPE_CHECKING:
    from evaluation.scale import ScaleDown


__all__ = ["DEFAULT_JOB", "JobRecipe", "TrainStage", "load_job_recipe", "run_pipeline"]

logger = logging.getLogger(__name__)

DEFAULT_JOB = PROJECT_ROOT / "recipes" / "jobs" / "quickstart.yaml"
STAGES_FILE = "stages.json"
_CONFIG_KEYS = ("config", "cpu_config", "accelerate_config")


@dataclass
class TrainStage:
    """One tuned judge of the job."""

    name: str = field(metadata={"help": "folder name under <out>/judges/", **non_empty()})
    config: str = field(metadata={"help": "training config YAML (judgeforge train)", **non_empty()})
    cpu_config: str | None = field(default=None, metadata={"help": "config used on a machine without CUDA"})
    accelerate_config: str | None = field(
        default=None,
        metadata={"help": "accelerate config (e.g. ZeRO-3) to launch with when CUDA is present"},
    )
    args: dict[str, Any] = field(default_factory=dict, metadata={"help": "flags on top of the config"})


@dataclass
class JobRecipe:
    """A parsed job recipe (see the module docstring)."""

    name: str = field(metadata={"help": "job name; the default run folder is runs/<name>", **non_empty()})
    data: str = field(metadata={"help": "data recipe YAML", **non_empty()})
    eval: str = field(metadata={"help": "run recipe YAML", **non_empty()})
    train: list[TrainStage] = field(default_factory=list, metadata={"help": "tuned judges to train"})
    description: str = field(default="", metadata={"help": "one line for humans"})
    path: str = field(default="<memory>", metadata={"help": "the file it came from", "yaml": False})


def load_job_recipe(path: str | Path) -> JobRecipe:
    """Read a job recipe, reporting every unknown key, bad value and missing stage file together.

    Paths in it are resolved (:func:`recipes.paths.resolve_path`) next to the job recipe.

    Raises:
        recipes.loader.RecipeError: each problem as ``<file>: field '<key path>': expected ...``.
    """
    file = resolve_path(path)
    where = str(file)
    problems = Problems(where, hint="`judgeforge recipe keys job`")
    job = parse_into(JobRecipe, read_yaml(file, "job recipe"), problems)
    problems.raise_if_any()
    names = [s.name for s in job.train]
    if len(set(names)) != len(names):
        problems.add("train", "unique tuned-judge names", names)

    def near(value: str | None, key: str, what: str) -> str | None:
        if not value:
            return value
        resolved = resolve_path(value, file)
        if not resolved.is_file():
            problems.add(key, what, str(resolved))
        return str(resolved)

    recipe = dataclasses.replace(
        job,
        data=near(job.data, "data", "an existing recipe file"),
        eval=near(job.eval, "eval", "an existing recipe file"),
        train=[
            dataclasses.replace(
                s, **{k: near(getattr(s, k), f"train[{i}].{k}", "an existing training config") for k in _CONFIG_KEYS}
            )
            for i, s in enumerate(job.train)
        ],
        path=where,
    )
    problems.raise_if_any()
    return recipe


# ----------------------------------------------------------------------------------------------
# Stage bookkeeping
# ----------------------------------------------------------------------------------------------


def _fingerprint(*parts: Any) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path) and part.is_file():
            digest.update(part.read_bytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()[:16]


class _Stages:
    """``stages.json``: which stage finished with which inputs."""

    def __init__(self, folder: Path):
        self.path = folder / STAGES_FILE
        self.done: dict[str, str] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def finished(self, stage: str, fingerprint: str) -> bool:
        return self.done.get(stage) == fingerprint

    def mark(self, stage: str, fingerprint: str) -> None:
        self.done[stage] = fingerprint
        write_atomically(self.path, json.dumps(self.done, indent=2, sort_keys=True) + "\n")


def _banner(step: int, total: int, text: str) -> None:
    print(f"\n=== [{step}/{total}] {text} ===", flush=True)


# ----------------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------------


def _gpus() -> int:
    """This node's GPUs; under a launcher counted without starting CUDA (evaluation takes a share later)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from evaluation.distributed import node_gpus

        return len(node_gpus())
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _train_config(stage: TrainStage) -> str:
    return stage.cpu_config if stage.cpu_config and not _gpus() else stage.config


def _train_argv(stage: TrainStage, data_dir: Path, out: Path, model: str | None, train_rows: int | None) -> list[str]:
    argv = [_train_config(stage), "--data_dir", str(data_dir), "--output_dir", str(out)]
    for key, value in stage.args.items():
        argv += [f"--{key}", str(value)]
    if model:
        argv += ["--model_name_or_path", model, *_fit_lora_layers(argv[0], model)]
    if train_rows:
        argv += ["--train_rows", str(train_rows)]
    return argv


def _fit_lora_layers(config: str, model: str) -> list[str]:
    """With ``--models``, a config's ``lora_layers`` may exceed the new model's depth: adapt all its layers."""
    with open(config, encoding="utf-8") as handle:
        layers = (yaml.safe_load(handle) or {}).get("lora_layers")
    if not layers:
        return []
    from transformers import AutoConfig

    from recipes.models import resolve_model

    config = AutoConfig.from_pretrained(resolve_model(model), trust_remote_code=False)
    total = config.get_text_config().num_hidden_layers
    return ["--lora_layers", str(total)] if layers > total else []


def _run_training(stage: TrainStage, argv: list[str]) -> None:
    # A child process: training's memory is returned before evaluation starts, and a crash in the
    # trainer leaves the checkpoints it wrote for the next attempt to resume from.
    command = [sys.executable, "-m", "judgeforge.cli", "train", *argv]
    gpus = _gpus()
    if stage.accelerate_config and gpus:
        # One process per visible GPU: the config's num_processes describes a full node (8).
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", stage.accelerate_config]
        launcher += ["--num_processes", str(gpus)]
        command = [*launcher, "-m", "judgeforge.cli", "train", *argv]
    logger.info("training: %s", " ".join(command))
    from evaluation.distributed import single_process_env

    # Under `accelerate launch` of the whole job, training is still launched on its own, on every GPU.
    result = subprocess.run(command, check=False, env=single_process_env())
    if result.returncode != 0:
        raise RuntimeError(f"training failed (exit {result.returncode}): {' '.join(command)}")


def _record_robustness(report: Any, eval_dir: Path, tuned_dirs: list[str], split: str) -> None:
    """Write each tuned judge's figures under attack into its ``judge.json`` (judges this job trained)."""
    from evaluation import registry
    from evaluation.report import read_run_info
    from evaluation.robustness import robustness_summary
    from recipes.judge_card import JudgeCard

    for judge in read_run_info(eval_dir).judges:
        if judge.get("kind") != registry.TUNED or judge.get("model") not in tuned_dirs:
            continue
        summary = robustness_summary(report.robustness, judge["name"], split=split, run=str(eval_dir))
        if summary:
            JudgeCard.read(judge["model"]).with_robustness(summary).write(judge["model"])


def _headline(report: Any) -> str:
    """The headline table of the :class:`evaluation.report.Report` just written, as printed Markdown.

    It comes from the report's own table, not from reading ``report.md`` back.
    """
    return report.headline()


# ----------------------------------------------------------------------------------------------
# Dry run
# ----------------------------------------------------------------------------------------------


def _training_keys(config: str) -> dict[str, Any]:
    """A training config's YAML, checked key by key against the training parser's dataclasses.

    GPU configs cannot be instantiated on a CPU machine (transformers refuses bf16 there), so the
    dry run checks their keys and reads their model from the YAML instead.
    """
    from training.sft import make_parser

    with open(config, encoding="utf-8") as handle:
        values = yaml.safe_load(handle) or {}
    known = {f.name for cls in make_parser().dataclass_types for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise DataError(config, None, key, "a field of the training configs (judgeforge train --help)", key)
    return values


def _describe_training(config: str, model: str | None) -> str:
    values = _training_keys(config)
    model = model or values.get("model_name_or_path")
    mode = "LoRA" if values.get("use_peft", True) else "full"
    if values.get("load_in_4bit"):
        mode = "QLoRA"
    return f"model={model} mode={mode} config={config}"


def _dry_run(job: JobRecipe, out: Path, data_root: str | None, scale: ScaleDown) -> int:
    from evaluation.plan import plan
    from evaluation.run_recipe import load_run_recipe
    from recipes.builders import build_datasets, load_data_recipe
    from training.sft import make_parser

    print(f"job {job.name}: {job.path}\nrun folder: {out}\n")
    data_recipe = load_data_recipe(job.data)
    built = build_datasets(data_recipe, data_root=data_root)
    print(f"[data] {job.data}")
    print(built.card.to_markdown())
    categories = [c.name for c in data_recipe.categories]
    print("\n[train]")
    tuned = []
    for stage in job.train:
        judge_dir = out / "judges" / stage.name
        launch = f" launched with {stage.accelerate_config}" if stage.accelerate_config else ""
        print(f"  {stage.name} -> {judge_dir}\n    GPU: {_describe_training(stage.config, scale.model)}{launch}")
        used = _train_config(stage)
        if used != stage.config:
            print(f"    here (no CUDA): {_describe_training(used, scale.model)}")
        # The config that would run on this machine is parsed for real, as `judgeforge train` would.
        argv = _train_argv(stage, out / "data", judge_dir, scale.model, None)
        make_parser().parse_args_and_config(["--config", *argv])
        tuned.append((stage.name, scale.model or _training_keys(stage.config).get("model_name_or_path")))
    recipe = scale.apply(load_run_recipe(job.eval))
    cells = plan(recipe, categories=recipe.categories or categories, data_categories=categories)
    print(f"\n[eval] {job.eval}: {len(cells)} cells (judge x category x repeat), repeats={recipe.repeats}")
    print("  judge | kind | model | prompt | categories")
    seen: dict[tuple, list[str]] = {}
    for item in cells:
        key = (item.judge, item.kind, item.model, item.prompt)
        if item.category not in seen.setdefault(key, []):
            seen[key].append(item.category)
    for (judge, kind, model, prompt), cats in seen.items():
        print(f"  {judge} | {kind} | {model} | {prompt} | {', '.join(cats)}")
    for name, model in tuned:
        print(f"  tuned:{name} | tuned | {model} | (from judge.json) | {', '.join(recipe.categories or categories)}")
    print("\n[report] report.md, report.html, metrics.csv, plots")
    print("\ndry run: every recipe, model name, prompt and category checked; nothing was run")
    return 0


# ----------------------------------------------------------------------------------------------
# The job
# ----------------------------------------------------------------------------------------------


def check_folder_names(job: JobRecipe) -> None:
    """Job and stage names become folders (``runs/<job>``, ``<out>/judges/<stage>``): none may leave them.

    Raises:
        DataError: a name that is empty, ``.``/``..``, holds a path separator or ``..``, or is padded.
    """
    named = [("name", job.name)] + [(f"train[{i}].name", stage.name) for i, stage in enumerate(job.train)]
    for field_name, name in named:
        text = str(name)
        if text in ("", ".") or ".." in text or any(c in text for c in "/\\\0") or text != text.strip():
            raise DataError(job.path, None, field_name, "a plain folder name (no '/', '\\' or '..')", name)


def _prepare(job: JobRecipe, out: Path, stages: _Stages, total: int, data_root: str | None, scale: ScaleDown) -> None:
    """The data and training stages (each reused when its inputs did not change)."""
    from recipes.builders import DataCard, build_from_file

    step = 1
    data_dir = out / "data"
    data_key = _fingerprint(Path(job.data), data_root)
    _banner(step, total, f"data: {job.data}")
    if stages.finished("data", data_key) and (data_dir / "data_card.json").is_file():
        print(f"reusing {data_dir}")
    else:
        card = build_from_file(job.data, data_dir, data_root=data_root)
        print(card.to_markdown())
        stages.mark("data", data_key)

    n_categories = len(DataCard.read(data_dir).counts) or 1
    for stage in job.train:
        step += 1
        judge_dir = out / "judges" / stage.name
        argv = _train_argv(stage, data_dir, judge_dir, scale.model, scale.train_rows(n_categories))
        key = _fingerprint(Path(argv[0]), argv[1:], data_key)
        _banner(step, total, f"train {stage.name}: {argv[0]}")
        if stages.finished(f"train:{stage.name}", key) and (judge_dir / "judge.json").is_file():
            print(f"reusing {judge_dir}")
        else:
            _run_training(stage, argv)
            stages.mark(f"train:{stage.name}", key)


def run_pipeline(
    recipe: str | None = None,
    *,
    out_dir: str | None = None,
    data_root: str | None = None,
    dry_run: bool = False,
    scale: ScaleDown | None = None,
) -> int:
    """Run (or, with ``dry_run``, plan and check) a job recipe; returns the process exit code.

    Args:
        recipe: job recipe YAML (default: the CPU quickstart).
        out_dir: run folder (default: ``runs/<job name>``).
        data_root: folder of the shared real data, for recipes that read it.
        dry_run: print every stage's plan and check every name it uses, run nothing.
        scale: the command line's scale-down (``--models`` also replaces every tuned base model,
            ``--limit`` also caps training rows at that many per category), applied here once.
    """
    from evaluation.scale import ScaleDown

    scale = scale or ScaleDown()
    job = load_job_recipe(recipe or DEFAULT_JOB)
    check_folder_names(job)
    out = Path(out_dir or Path("runs") / job.name)
    if dry_run:
        return _dry_run(job, out, data_root, scale)
    from evaluation.distributed import current_ranks
    from evaluation.report import write_report
    from evaluation.run_recipe import DataConfig, load_run_recipe
    from evaluation.runs import run_eval

    started = time.monotonic()
    # Under `accelerate launch`, rank 0 builds the data and trains (training launches itself on every
    # GPU) while the others wait; every rank then evaluates its share, and rank 0 writes the report.
    ranks = current_ranks(share_gpus=False)
    out.mkdir(parents=True, exist_ok=True)
    stages = _Stages(out)
    total = 3 + len(job.train)
    tuned_dirs = [str(out / "judges" / stage.name) for stage in job.train]
    if ranks.main:
        _prepare(job, out, stages, total, data_root, scale)
    ranks.wait()
    step = total - 1
    data_dir = out / "data"

    if ranks.main:
        _banner(step, total, f"evaluate: {job.eval}")
    run = load_run_recipe(job.eval)
    run = dataclasses.replace(run, data=DataConfig(dir=str(data_dir)), tuned=[*run.tuned, *tuned_dirs])
    summary = run_eval(scale.apply(run), out / "eval", data_root=data_root)
    if not ranks.main:
        return 0
    print(summary.line())

    step += 1
    _banner(step, total, "report")
    report = write_report(out / "eval")
    _record_robustness(report, out / "eval", tuned_dirs, run.split)
    report_md = report.markdown
    print(_headline(report))
    minutes = (time.monotonic() - started) / 60
    print(f"\nreport: {report_md}\n        {report_md.with_suffix('.html')}\ndone in {minutes:.1f} min")
    return 0
