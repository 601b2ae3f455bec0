"""A run killed mid-way resumes from its last complete checkpoint and ends exactly where an uninterrupted run does."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file


def _config(path, tiny_model_dir, sft_dir, output_dir):
    config = {
        "model_name_or_path": tiny_model_dir,
        "data_dir": str(sft_dir),
        "output_dir": str(output_dir),
        "max_steps": 16,
        "per_device_train_batch_size": 4,
        "learning_rate": 1.0e-2,
        "eval_strategy": "no",
        "eval_on_start": False,
        "save_strategy": "steps",
        "save_steps": 4,
        "save_total_limit": 3,
        "logging_steps": 1,
        "report_to": "none",
        "verdict_eval_rows": 4,
        "seed": 7,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _history(run_dir):
    return json.loads((run_dir / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]


@pytest.mark.slow
def test_killed_run_resumes_and_matches_an_uninterrupted_one(tiny_model_dir, sft_dir, tmp_path, parse):
    from training.sft import main

    killed = tmp_path / "killed"
    config = _config(tmp_path / "run.yaml", tiny_model_dir, sft_dir, killed)
    process = subprocess.Popen(
        [sys.executable, "-m", "training.sft", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not (killed / "checkpoint-4" / "trainer_state.json").is_file():
            assert process.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "judge.json").exists()  # it really was interrupted

    resumed = main(*parse(["--config", str(config)]))
    summary = json.loads((resumed / "train_summary.json").read_text(encoding="utf-8"))
    assert summary["global_step"] == 16 and summary["resumed_from"].split("checkpoint-")[-1] in {"4", "8", "12"}
    steps = [entry["step"] for entry in _history(resumed) if "loss" in entry]
    assert steps == list(range(1, 17))  # nothing lost, nothing logged twice

    reference = main(*parse(["--config", str(config), "--output_dir", str(tmp_path / "reference")]))
    want = [entry["loss"] for entry in _history(reference) if "loss" in entry]
    got = [entry["loss"] for entry in _history(resumed) if "loss" in entry]
    assert got == pytest.approx(want, rel=1e-4)  # same seeds, same data order, same updates
    a = load_file(str(resumed / "adapter_model.safetensors"))
    b = load_file(str(reference / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
