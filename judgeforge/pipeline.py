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
from typing import Any

import yaml

from recipes.schema import DataError


__all__ = ["DEFAULT_JOB", "JobRecipe", "TrainStage", "load_job_recipe", "run_pipeline"]

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JOB = PROJECT_ROOT / "recipes" / "jobs" / "quickstart.yaml"
STAGES_FILE = "stages.json"


@dataclass
class TrainStage:
    """One tuned judge of the job."""

    name: str = field(metadata={"help": "folder name under <out>/judges/"})
    config: str = field(metadata={"help": "training config YAML (judgeforge train)"})
    cpu_config: str | None = field(default=None, metadata={"help": "config used on a machine without CUDA"})
    accelerate_config: str | None = field(
        default=None,
        metadata={"help": "accelerate config (e.g. ZeRO-3) to launch with when CUDA is present"},
    )
    args: dict[str, Any] = field(default_factory=dict, metadata={"help": "flags on top of the config"})


@dataclass
class JobRecipe:
    """A parsed job recipe (see the module docstring)."""

    name: str = field(metadata={"help": "job name; the default run folder is runs/<name>"})
    data: str = field(metadata={"help": "data recipe YAML"})
    eval: str = field(metadata={"help": "run recipe YAML"})
    train: list[TrainStage] = field(default_factory=list, metadata={"help": "tuned judges to train"})
    description: str = field(default="", metadata={"help": "one line for humans"})
    path: str = field(default="<memory>", metadata={"help": "the file it came from (not a YAML key)"})


def _resolve(path: str, base: Path) -> Path:
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    for root in (base, PROJECT_ROOT):
        if (root / candidate).exists():
            return root / candidate
    return candidate


def load_job_recipe(path: str | Path) -> JobRecipe:
    """Read a job recipe, rejecting unknown keys and checking that the stage recipes exist."""
    file = _resolve(str(path), Path.cwd())
    if not file.is_file():
        raise DataError(str(path), None, "recipe", "an existing job recipe YAML file", str(path))
    with open(file, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    where = str(file)
    if not isinstance(data, dict):
        raise DataError(where, None, "<root>", "a mapping with name, data, train, eval", type(data).__name__)
    known = {f.name for f in dataclasses.fields(JobRecipe)} - {"path"}
    for key in data:
        if key not in known:
            raise DataError(where, None, key, f"one of {sorted(known)}", key)
    for key in ("name", "data", "eval"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise DataError(where, None, key, "a non-empty string", data.get(key))
    stages = []
    stage_keys = {f.name for f in dataclasses.fields(TrainStage)}
    for i, item in enumerate(data.get("train") or []):
        if not isinstance(item, dict) or not {"name", "config"} <= set(item) or set(item) - stage_keys:
            raise DataError(
                where, None, f"train[{i}]", f"a mapping with name, config (keys {sorted(stage_keys)})", item
            )
        if not isinstance(item.get("args", {}), dict):
            raise DataError(where, None, f"train[{i}].args", "a mapping of flag -> value", item["args"])
        stages.append(TrainStage(**item))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise DataError(where, None, "train", "unique tuned-judge names", names)
    base = file.parent
    recipe = JobRecipe(
        name=data["name"],
        data=str(_resolve(data["data"], base)),
        eval=str(_resolve(data["eval"], base)),
        train=[
            dataclasses.replace(
                s,
                config=str(_resolve(s.config, base)),
                cpu_config=str(_resolve(s.cpu_config, base)) if s.cpu_config else None,
                accelerate_config=str(_resolve(s.accelerate_config, base)) if s.accelerate_config else None,
            )
            for s in stages
        ],
        description=str(data.get("description", "")),
        path=where,
    )
    for key, value in (("data", recipe.data), ("eval", recipe.eval)):
        if not Path(value).is_file():
            raise DataError(where, None, key, "an existing recipe file", value)
    for i, stage in enumerate(recipe.train):
        for key in ("config", "cpu_config", "accelerate_config"):
            value = getattr(stage, key)
            if value and not Path(value).is_file():
                raise DataError(where, None, f"train[{i}].{key}", "an existing training config", value)
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
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.done, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def _banner(step: int, total: int, text: str) -> None:
    print(f"\n=== [{step}/{total}] {text} ===", flush=True)


# ----------------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------------


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _train_config(stage: TrainStage) -> str:
    return stage.cpu_config if stage.cpu_config and not _gpus() else stage.config


def _train_argv(
    stage: TrainStage, data_dir: Path, out: Path, models: list[str] | None, train_rows: int | None
) -> list[str]:
    argv = [_train_config(stage), "--data_dir", str(data_dir), "--output_dir", str(out)]
    for key, value in stage.args.items():
        argv += [f"--{key}", str(value)]
    if models:
        argv += ["--model_name_or_path", models[0], *_fit_lora_layers(argv[0], models[0])]
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
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"training failed (exit {result.returncode}): {' '.join(command)}")


def _headline(report_md: Path) -> str:
    """The first table of the report (the headline), as printed Markdown."""
    lines = report_md.read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        return ""
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    heading = next((lines[i] for i in range(start, -1, -1) if lines[i].startswith("#")), "")
    return "\n".join([heading, *lines[start:end]])


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


def _describe_training(config: str, models: list[str] | None) -> str:
    values = _training_keys(config)
    model = models[0] if models else values.get("model_name_or_path")
    mode = "LoRA" if values.get("use_peft", True) else "full"
    if values.get("load_in_4bit"):
        mode = "QLoRA"
    return f"model={model} mode={mode} config={config}"


def _dry_run(
    job: JobRecipe,
    out: Path,
    data_root: str | None,
    models: list[str] | None,
    limit: int | None,
    max_new_tokens: int | None,
) -> int:
    from evaluation.run_recipe import check_recipe, load_run_recipe, plan, scale_down
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
        print(f"  {stage.name} -> {judge_dir}\n    GPU: {_describe_training(stage.config, models)}{launch}")
        used = _train_config(stage)
        if used != stage.config:
            print(f"    here (no CUDA): {_describe_training(used, models)}")
        # The config that would run on this machine is parsed for real, as `judgeforge train` would.
        make_parser().parse_args_and_config(["--config", *_train_argv(stage, out / "data", judge_dir, models, None)])
        tuned.append((stage.name, models[0] if models else _training_keys(stage.config).get("model_name_or_path")))
    recipe = scale_down(load_run_recipe(job.eval), limit=limit, models=models, max_new_tokens=max_new_tokens)
    check_recipe(recipe, data_categories=categories)
    jobs = plan(recipe, categories=recipe.categories or categories)
    print(f"\n[eval] {job.eval}: {len(jobs)} jobs (judge x category x repeat), repeats={recipe.repeats}")
    print("  judge | kind | model | prompt | categories")
    seen: dict[tuple, list[str]] = {}
    for item in jobs:
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


def run_pipeline(
    recipe: str | None = None,
    *,
    out_dir: str | None = None,
    data_root: str | None = None,
    dry_run: bool = False,
    models: list[str] | None = None,
    limit: int | None = None,
    max_new_tokens: int | None = None,
) -> int:
    """Run (or, with ``dry_run``, plan and check) a job recipe; returns the process exit code.

    Args:
        recipe: job recipe YAML (default: the CPU quickstart).
        out_dir: run folder (default: ``runs/<job name>``).
        data_root: folder of the shared real data, for recipes that read it.
        dry_run: print every stage's plan and check every name it uses, run nothing.
        models: scale down: replace every judge and tuned base model with these.
        limit: scale down: at most this many evaluation examples per category (and that many training
            rows per category).
        max_new_tokens: scale down: cap every judge's and reviewer's generation budget.
    """
    job = load_job_recipe(recipe or DEFAULT_JOB)
    check_folder_names(job)
    out = Path(out_dir or Path("runs") / job.name)
    if dry_run:
        return _dry_run(job, out, data_root, models, limit, max_new_tokens)
    from evaluation.report import write_report
    from evaluation.run_recipe import DataConfig, load_run_recipe
    from evaluation.runs import run_eval
    from recipes.builders import DataCard, build_from_file

    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    stages = _Stages(out)
    total = 3 + len(job.train)
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

    tuned_dirs = []
    n_categories = len(DataCard.read(data_dir).counts) or 1
    for stage in job.train:
        step += 1
        judge_dir = out / "judges" / stage.name
        argv = _train_argv(stage, data_dir, judge_dir, models, limit * n_categories if limit else None)
        key = _fingerprint(Path(argv[0]), argv[1:], data_key)
        _banner(step, total, f"train {stage.name}: {argv[0]}")
        if stages.finished(f"train:{stage.name}", key) and (judge_dir / "judge.json").is_file():
            print(f"reusing {judge_dir}")
        else:
            _run_training(stage, argv)
            stages.mark(f"train:{stage.name}", key)
        tuned_dirs.append(str(judge_dir))

    step += 1
    _banner(step, total, f"evaluate: {job.eval}")
    run = load_run_recipe(job.eval)
    run = dataclasses.replace(run, data=DataConfig(dir=str(data_dir)), tuned=[*run.tuned, *tuned_dirs])
    summary = run_eval(
        run, out / "eval", data_root=data_root, limit=limit, models=models, max_new_tokens=max_new_tokens
    )
    print(summary.line())

    step += 1
    _banner(step, total, "report")
    paths = write_report(out / "eval")
    report_md = next((p for p in paths if p.name == "report.md"), out / "eval" / "report.md")
    print(_headline(report_md))
    minutes = (time.monotonic() - started) / 60
    print(f"\nreport: {report_md}\n        {report_md.with_suffix('.html')}\ndone in {minutes:.1f} min")
    return 0
