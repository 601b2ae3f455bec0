"""scripts/train_multi_gpu.sh and eval_multi_gpu.sh build the right ``accelerate launch`` line (a stub records it)."""

import os
import subprocess
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_multi_gpu.sh"
RECIPE = "recipes/training/qwen2.5-7b_lora_zero2.yaml"


def _run(tmp_path, *args, script=SCRIPT, **env):
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "accelerate").write_text('#!/bin/sh\necho "accelerate $*"\n', encoding="utf-8")
    (stub / "accelerate").chmod(0o755)
    environment = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}", **env}
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=environment, timeout=60)


def test_single_node_uses_every_gpu_and_forwards_flags(tmp_path):
    result = _run(tmp_path, RECIPE, "zero2", "--num_train_epochs", "1", NUM_GPUS="4")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert "--config_file training/accelerate/zero2.yaml --num_processes 4" in line
    assert line.endswith(f"-m training.sft --config {RECIPE} --num_train_epochs 1")


def test_multi_node_uses_the_template_and_rank_settings(tmp_path):
    result = _run(tmp_path, RECIPE, NUM_GPUS="8", NUM_NODES="2", NODE_RANK="1", MASTER_ADDR="10.1.2.3")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert "--config_file training/accelerate/multi_node_zero3.yaml --num_processes 16" in line
    assert "--num_machines 2 --machine_rank 1 --main_process_ip 10.1.2.3 --main_process_port 29500" in line


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        pytest.param((RECIPE, "zero9"), {"NUM_GPUS": "2"}, "unknown DeepSpeed setting 'zero9'", id="unknown_zero"),
        pytest.param(("nope.yaml",), {"NUM_GPUS": "2"}, "recipe not found", id="missing_recipe"),
        pytest.param((RECIPE,), {"NUM_GPUS": "0"}, "no GPU found", id="no_gpu"),
        pytest.param((RECIPE,), {"NUM_GPUS": "2", "NUM_NODES": "2"}, "NODE_RANK", id="multi_node_without_rank"),
    ],
)
def test_bad_launches_exit_with_a_reason(tmp_path, args, env, message):
    result = _run(tmp_path, *args, **env)
    assert result.returncode != 0 and message in result.stderr
    assert "accelerate" not in result.stdout


def test_help_lists_the_deepspeed_settings(tmp_path):
    result = _run(tmp_path, "--help")
    assert result.returncode == 0 and "zero3_offload" in result.stdout and "MASTER_ADDR" in result.stdout


def test_gpu_check_refuses_a_machine_without_cuda(tmp_path):
    """scripts/gpu_check.sh says why and exits 2 before running anything, where torch sees no GPU."""
    import sys

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=120,
    )
    assert result.returncode == 2 and "no CUDA device" in result.stderr
    assert not (tmp_path / "out" / "gpu_tests.log").exists()


EVAL_SCRIPT = ROOT / "scripts" / "eval_multi_gpu.sh"


def _run_eval(tmp_path, *args, **env):
    return _run(tmp_path, *args, script=EVAL_SCRIPT, **env)


@pytest.mark.parametrize(
    ("env", "processes", "node_flags"),
    [
        ({"NUM_GPUS": "8"}, 8, "--num_machines 1 --main_process_port 29500"),
        ({"NUM_GPUS": "8", "GPUS_PER_PROCESS": "4"}, 2, "--num_machines 1"),
        (
            {"NUM_GPUS": "8", "NUM_NODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.1.2.3", "MASTER_PORT": "29600"},
            16,
            "--num_machines 2 --machine_rank 1 --main_process_ip 10.1.2.3 --main_process_port 29600",
        ),
    ],
)
def test_eval_launch_has_one_process_per_gpu_share(tmp_path, env, processes, node_flags):
    result = _run_eval(tmp_path, "recipes/runs/paper.yaml", "runs/p", "--data-root", "../shared/data", **env)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert f"accelerate launch --multi_gpu --num_processes {processes} {node_flags}" in line
    assert line.endswith("-m judgeforge.cli eval recipes/runs/paper.yaml --out runs/p --data-root ../shared/data")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("recipes/runs/paper.yaml",), {"NUM_GPUS": "2"}, "RUN.yaml OUT_DIR"),
        (("nope.yaml", "out"), {"NUM_GPUS": "2"}, "run recipe not found"),
        (("recipes/runs/paper.yaml", "out"), {"NUM_GPUS": "0"}, "no GPU found"),
        (("recipes/runs/paper.yaml", "out"), {"NUM_GPUS": "6", "GPUS_PER_PROCESS": "4"}, "must divide"),
    ],
)
def test_bad_eval_launches_exit_with_a_reason(tmp_path, args, env, message):
    result = _run_eval(tmp_path, *args, **env)
    assert result.returncode != 0 and message in result.stdout + result.stderr
    assert "accelerate launch" not in result.stdout
