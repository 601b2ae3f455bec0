"""The README's commands, as written and in the README's order, on a fresh copy of the tree (scaled down).

A copy of what a clone holds (tracked files, and new ones git does not ignore: no ``runs/``, no
virtual environment) is made in a temporary folder, and every CPU command of the set-up and the
tour runs there in its own process, with only the scale-down flags added (the tiny model for
``smollm2-135m``, a few rows). Each command is looked up in the README first, so a README edit
that is not reflected here fails this test, and so does a command that only works after another
that the README gives later.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]


def _readme_text() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.sub(r"\s*\\\n\s*", " ", text)  # a command continued over lines is one line


def _fresh_copy(dest: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


# (the command as the README writes it, the scale-down added here, needs ../shared/data)
TOUR = [
    ("judgeforge run", ["--models", "{tiny}", "--limit", "2", "--max-new-tokens", "8"], False),
    (
        "judgeforge judge --judge runs/quickstart/judges/smollm2-135m-lora --category jailbreak "
        "--input recipes/examples/jailbreak_chats.csv --prompt-column question --response-column answer "
        "--label-column label --out runs/verdicts.csv",
        [],
        False,
    ),
    (
        "judgeforge judge --judge smollm2-135m --prompt criteria --category data_leakage "
        "--input recipes/examples/leak_chats.jsonl --context-column context --label-column label "
        "--keep-columns label --out runs/leaks.jsonl",
        [],
        False,
    ),
    ("judgeforge prompts show --category data_leakage --prompt few_shot", [], False),
    ("judgeforge recipe keys run", [], False),
    ("judgeforge data build recipes/data/xstest.yaml --out runs/data/xstest --data-root ../shared/data", [], True),
    ("judgeforge data show runs/data/xstest", [], True),
    (
        "judgeforge train recipes/training/quickstart_cpu.yaml --output_dir runs/my-judge --num_train_epochs 2",
        [
            "--model_name_or_path",
            "{tiny}",
            "--lora_layers",
            "2",
            "--train_rows",
            "16",
            "--max_steps",
            "2",
            "--verdict_eval_rows",
            "8",
            "--save_steps",
            "2",
        ],
        False,
    ),  # fmt: skip
    ("judgeforge export runs/my-judge --merge --out runs/my-judge-merged", [], False),
    (
        "judgeforge eval recipes/runs/quickstart.yaml --out runs/eval",
        ["--limit", "2", "--models", "{tiny}", "--max-new-tokens", "8"],
        False,
    ),  # fmt: skip
    ("judgeforge report runs/eval", [], False),
    ("judgeforge run recipes/jobs/paper.yaml --data-root ../shared/data --dry-run", [], True),
]


def _argv(command: str, extra: list[str], tiny: str, data_root: Path | None) -> list[str]:
    words = [tiny if w == "smollm2-135m" else w for w in command.split()[1:]]
    if data_root is not None:
        words = [str(data_root) if w == "../shared/data" else w for w in words]
    return [sys.executable, "-m", "judgeforge.cli", *words, *[w.format(tiny=tiny) for w in extra]]


def test_every_tour_command_is_in_the_readme_in_this_order():
    text = _readme_text()
    positions = []
    for command, _, _ in TOUR:
        assert command in text, f"README no longer gives: {command}"
        positions.append(text.index(command, positions[-1] if positions else 0))
    assert positions == sorted(positions)


@pytest.mark.slow
def test_the_tour_runs_on_a_fresh_copy(tiny_model_dir, optional_shared_data, tmp_path):
    clone = _fresh_copy(tmp_path / "clone")
    assert not (clone / "runs").exists()
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="offline", PYTHONPATH=str(clone))
    log = []
    for command, extra, needs_data in TOUR:
        if needs_data and optional_shared_data is None:
            log.append(f"skipped (no shared data): {command}")
            continue
        argv = _argv(command, extra, tiny_model_dir, optional_shared_data)
        start = time.monotonic()
        done = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True, timeout=900)
        log.append(f"rc {done.returncode} in {time.monotonic() - start:.0f} s: {command}")
        assert done.returncode == 0, f"{command}\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}"
        if command.startswith("judgeforge judge"):
            assert "against 6 labelled rows" in done.stdout and "F1 " in done.stdout
    print("\n".join(log))
    assert (clone / "runs" / "quickstart" / "eval" / "report.md").is_file()
    assert (clone / "runs" / "verdicts.csv").read_text(encoding="utf-8").startswith("id,label,status")
    assert (clone / "runs" / "verdicts.csv.metrics.json").is_file()
    assert (clone / "runs" / "data" / "quickstart" / "data_card.json").is_file()  # built by `train` itself
    assert (clone / "runs" / "my-judge-merged").is_dir() and (clone / "runs" / "eval" / "report.md").is_file()
