"""`judgeforge eval` split across two processes by `accelerate launch`, against one process.

Two real processes started by accelerate's launcher (torch.distributed.run, gloo) on this CPU: the
merged store equals a one-process run record for record, every cell is computed by exactly one rank
and once, and a rank killed mid-run is finished by a one-process rerun with nothing duplicated.
accelerate's own ``--cpu`` launcher starts several processes only through mpirun, so the test asks for
``--multi_gpu``, which on a machine without CUDA starts the same processes without GPUs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import yaml

from evaluation.metric_rows import compute_metric_rows
from evaluation.store import read_results, record_key, store_files


ROOT = Path(__file__).resolve().parents[2]

# A backend that logs every judgment it computes (and, when asked, kills its own process).
PLUGIN = '''
"""Counts what it computes: one line per call in $COUNT_LOG/<pid>.jsonl."""

import json
import os
import random
import re
import signal
from pathlib import Path

from evaluation.backends.base import Completion, PromptJudge
from evaluation.backends.options import PromptOptions
from evaluation.registry import register_backend
from recipes.verdict import render_review, render_target

_RESPONSE = re.compile(r"<victim_response>\\s*(.*?)\\s*</victim_response>", re.DOTALL)
_CALLS = []


class CountingJudge(PromptJudge):
    options_class = PromptOptions

    def complete(self, prompts, *, seed, ids=None):
        _CALLS.append(1)
        kill = os.environ.get("KILL_RANK")
        if kill is not None and kill == os.environ.get("RANK") and len(_CALLS) > int(os.environ["KILL_AFTER"]):
            os.kill(os.getpid(), signal.SIGKILL)
        log = Path(os.environ["COUNT_LOG"]) / f"{os.getpid()}.jsonl"
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"judge": self.name, "ids": list(ids or []), "seed": seed,
                                     "rank": os.environ.get("RANK", "0")}) + "\\n")
        out = []
        for ident, prompt in zip(ids or [], prompts):
            text = prompt.messages[-1]["content"]
            if prompt.template.answer == "review":
                out.append(Completion(text=render_review(len(text) % 3 != 0)))
                continue
            match = _RESPONSE.search(text)
            label = int("sure" in (match.group(1) if match else text).lower() or len(text) % 2 == 0)
            if self.spec.temperature > 0 and random.Random(f"{ident}-{seed}").random() < 0.3:
                label = 1 - label  # a sampling judge: its repeats differ
            if prompt.template.answer == "score":
                out.append(Completion(text=json.dumps({"score": 5 if label else 1})))
            else:
                out.append(Completion(text=render_target(prompt.category.positive, prompt.category.negative, label)))
        return out


register_backend("counting", CountingJudge, options=PromptOptions, deterministic="greedy",
                 check_model=lambda model: None)
'''


def _recipe(folder: Path, tiny_model_dir: str) -> Path:
    recipe = {
        "name": "split",
        "plugins": ["counting_backend"],
        "data": {"recipe": str(ROOT / "recipes" / "data" / "quickstart.yaml")},
        "split": "test",
        "categories": ["jailbreak", "over_refusal", "data_leakage"],
        "limit": 4,
        "repeats": 3,
        "seed": 0,
        "n_boot": 0,
        "judges": [
            {"models": ["count-a", "count-b"], "prompts": ["basic", "score"], "backend": "counting"},
            {"models": ["count-s"], "prompts": ["criteria"], "backend": "counting", "temperature": 0.7},
            {"models": [tiny_model_dir], "prompts": ["basic"], "backend": "hf", "batch_size": 8},
        ],
        "second_level": [{"judge": "best", "reviewer": {"model": "count-r", "backend": "counting"}}],
        "reference": ["tfidf", "refusal_phrases"],
        "robustness": {"limit": 1, "variants": 1},
    }
    path = folder / "split.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(tmp_path: Path, log: Path, **extra: str) -> dict[str, str]:
    log.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(tmp_path / "plugin"), str(ROOT)]),
        COUNT_LOG=str(log),
        CUDA_VISIBLE_DEVICES="",
        OMP_NUM_THREADS="1",
        **extra,
    )
    return env


def _eval(
    recipe: Path, out: Path, env: dict[str, str], processes: int = 1, command: str = "eval"
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "judgeforge.cli", command, str(recipe), "--out", str(out)]
    if processes > 1:
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes)]
        launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        launch += ["--main_process_port", str(_free_port()), "-m", "judgeforge.cli"]
        command = [*launch, *command[3:]]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _computed(log: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(log.glob("*.jsonl")) for line in path.read_text().splitlines()]


def _lines_per_key(out: Path) -> Counter:
    counts: Counter = Counter()
    for path in store_files(out):
        for line in path.read_text(encoding="utf-8").splitlines():
            counts[record_key(json.loads(line))] += 1
    return counts


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir):
    tmp_path = tmp_path_factory.mktemp("distributed")
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "counting_backend.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    recipe = _recipe(tmp_path, tiny_model_dir)
    single = tmp_path / "single"
    result = _eval(recipe, single, _env(tmp_path, tmp_path / "log-single"))
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path, recipe, {record_key(r): r for r in read_results(single)}


@pytest.mark.slow
def test_two_processes_give_the_one_process_records_each_computed_once(setup):
    tmp_path, recipe, single = setup
    out, log = tmp_path / "two", tmp_path / "log-two"
    result = _eval(recipe, out, _env(tmp_path, log), processes=2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in store_files(out)] == ["results.jsonl", "results.rank-1.jsonl"]
    assert all(p.stat().st_size > 0 for p in store_files(out)), "both ranks judged a share"

    merged = {record_key(r): r for r in read_results(out)}
    assert merged == single  # same keys, labels, probabilities, raw answers, reviews
    rank1 = [json.loads(line) for line in (out / "results.rank-1.jsonl").read_text().splitlines()]
    assert not [r for r in rank1 if r["kind"] == "reference"], "reference judges run on rank 0"
    assert set(_lines_per_key(out).values()) == {1}, "every record written once, by one rank"
    pooled = compute_metric_rows(list(merged.values()), n_boot=50, seed=0)
    assert pooled == compute_metric_rows(list(single.values()), n_boot=50, seed=0)

    # Each judgment computed once: a greedy judge once for all repeats, a sampling one once per repeat.
    calls = _computed(log)
    per_item = Counter((c["judge"], i, c["seed"]) for c in calls for i in c["ids"])
    assert per_item and set(per_item.values()) == {1}
    by_judge_rank = {(c["judge"], c["rank"]) for c in calls}
    assert {rank for _, rank in by_judge_rank} == {"0", "1"}
    sampled = {(i, seed) for judge, i, seed in per_item if judge == "count-s/criteria"}
    assert len({seed for _, seed in sampled}) == 3, "the sampling judge ran every repeat"

    run = json.loads((out / "run.json").read_text())
    ranks = run["finished"]["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["units"] > 0 for r in ranks)
    assert sum(r["judged"] for r in ranks) == run["finished"]["judged"] == len(merged)
    assert "2 processes busy" in result.stdout


@pytest.mark.slow
def test_a_killed_rank_is_finished_by_one_process_with_nothing_twice(setup):
    tmp_path, recipe, single = setup
    out = tmp_path / "killed"
    killed = _eval(recipe, out, _env(tmp_path, tmp_path / "log-kill", KILL_RANK="1", KILL_AFTER="4"), processes=2)
    assert killed.returncode != 0
    before = _lines_per_key(out)
    assert 0 < len(before) < len(single), "the kill left the run part done"

    log = tmp_path / "log-rerun"
    rerun = _eval(recipe, out, _env(tmp_path, log))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert set(_lines_per_key(out).values()) == {1}, "no key written twice across the rank files"
    assert {record_key(r): r for r in read_results(out)} == single
    done_before = {(judge, example, repeat) for judge, _, example, repeat in before}  # seed = repeat here
    redone = {(c["judge"], i, c["seed"]) for c in _computed(log) for i in c["ids"]} & done_before
    assert not redone, f"the rerun judged again what a rank had stored: {sorted(redone)[:5]}"


@pytest.mark.slow
def test_the_whole_job_under_two_processes_reports_once(setup):
    """`judgeforge run` launched twice over: rank 0 builds the data and writes the report, both evaluate."""
    tmp_path, recipe, single = setup
    job = tmp_path / "job.yaml"
    data = str(ROOT / "recipes" / "data" / "quickstart.yaml")
    job.write_text(yaml.safe_dump({"name": "split-job", "data": data, "eval": str(recipe)}), encoding="utf-8")
    out = tmp_path / "job"
    result = _eval(job, out, _env(tmp_path, tmp_path / "log-job"), processes=2, command="run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("=== [1/3] data") == 1 and result.stdout.count("## Headline") == 1
    assert (out / "eval" / "report.md").is_file() and (out / "eval" / "results.rank-1.jsonl").stat().st_size > 0
    labels = {record_key(r): r["label"] for r in read_results(out / "eval")}
    assert labels == {key: record["label"] for key, record in single.items()}


# -- the split itself (in process) -------------------------------------------------------------


def _unit(judge: str, cost: float, order: int, reference: bool = False):
    from evaluation.distributed import Unit

    return Unit(judge, "jailbreak", None, cost, (order, 0, 0), reference)


def test_assign_balances_cost_keeps_plan_order_and_reference_on_rank_0():
    from evaluation.distributed import assign, balance

    costs = [9, 1, 5, 5, 3, 7]
    units = [_unit("ref", 1.0, 0, reference=True)] + [_unit(f"j{i}", c, i + 1) for i, c in enumerate(costs)]
    shares = assign(units, 2)
    assert shares == assign(list(reversed(units)), 2), "the same split whatever order the plan lists"
    assert any(u.reference for u in shares[0]) and not any(u.reference for u in shares[1])
    assert all([u.order for u in share] == sorted(u.order for u in share) for share in shares)
    loads = [sum(u.cost for u in share) for share in shares]
    assert loads == [16, 15] and balance(loads) == pytest.approx(1 / 15)


def test_model_size_reads_folders_aliases_and_names(tmp_path):
    from evaluation.distributed import model_size
    from evaluation.types import JudgeSpec

    def size(model: str, backend: str = "hf") -> float:
        return model_size(JudgeSpec(model=model, prompt="basic", backend=backend))

    assert size("smollm2-135m") == pytest.approx(0.135)
    assert size("Qwen/Qwen2.5-7B-Instruct", "vllm") == 7 and size("Qwen/QwQ-32B", "vllm") == 32
    assert size("google/gemma-2-9b-it", "vllm") == 9 and size("meta-llama/Llama-Guard-3-1B", "guard") == 1
    assert size("gpt-4o", "openai") == 1.0  # no size in the name: one unit
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 4_000_000)
    assert size(str(tmp_path)) == pytest.approx(0.002)  # 4 MB of 16-bit weights: 2M parameters
    assert size("tfidf", "reference") < 0.01


def test_generation_costs_more_than_a_logit_read():
    from evaluation.distributed import GENERATED_TOKEN_COST, example_cost
    from evaluation.types import JudgeSpec

    example = {"prompt": "p" * 400, "response": "r" * 100_000}  # the response is cut to its budget
    read = example_cost(example, JudgeSpec(model="m", prompt="basic", backend="hf"))
    cot = example_cost(example, JudgeSpec(model="m", prompt="cot", backend="hf", max_new_tokens=64))
    assert read == pytest.approx((400 + 2000) / 4 + 150)
    assert cot - read == pytest.approx(64 * GENERATED_TOKEN_COST)


@pytest.mark.parametrize(
    ("visible", "local_rank", "local_world", "mine"),
    [("0,1,2,3,4,5,6,7", 1, 8, "1"), ("0,1,2,3,4,5,6,7", 1, 4, "2,3"), ("4,5", 1, 2, "5"), ("0", 1, 2, "0")],
)
def test_each_process_of_a_node_takes_its_share_of_the_gpus(visible, local_rank, local_world, mine, monkeypatch):
    from evaluation import distributed

    monkeypatch.setattr(distributed, "_NODE_GPUS", None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    distributed._share_gpus(local_rank, local_world)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == mine
    assert distributed.node_gpus() == visible.split(",")
    monkeypatch.setenv("RANK", "1")
    assert distributed.single_process_env()["CUDA_VISIBLE_DEVICES"] == visible  # a child launch gets them all
    assert "RANK" not in distributed.single_process_env()
