"""`judgeforge judge` end to end: a real process, a tiny model, then a resumed rerun in process."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from judgeforge.cli import dispatch as main  # raises; the console entry (main) reports errors
from recipes.schema import DataError


def test_judge_command_writes_one_line_per_row_and_resumes(tiny_model_dir, tmp_path, capsys):
    source = tmp_path / "chats.csv"
    with open(source, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "user", "assistant"])
        for i in range(5):
            writer.writerow([f"r{i}", f"question {i}", f"answer number {i} " * (i + 1)])
    out = tmp_path / "verdicts.jsonl"
    args = ["judge", "--judge", tiny_model_dir, "--prompt", "criteria", "--category", "malware"]
    args += ["--input", str(source), "--out", str(out), "--prompt-column", "user", "--response-column", "assistant"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-m", "judgeforge.cli", *args, "--batch-size", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "judged 5: ok 5" in done.stdout
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == [f"r{i}" for i in range(5)]
    assert all(line["label"] in (0, 1) and 0.0 <= line["p_positive"] <= 1.0 for line in lines)
    assert set(lines[0]) == {"id", "label", "status", "p_positive", "explanation"}

    # Rerun in process: everything is already there.
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "judged 0" in printed and "resumed 5" in printed
    assert len(out.read_text(encoding="utf-8").splitlines()) == 5


def test_judge_command_refuses_a_missing_column(tiny_model_dir, tmp_path):
    source = tmp_path / "chats.jsonl"
    source.write_text(json.dumps({"id": "1", "prompt": "q", "reply": "a"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="field 'response'.*columns"):
        main(
            [
                "judge",
                "--judge",
                tiny_model_dir,
                "--category",
                "jailbreak",
                "--input",
                str(source),
                "--out",
                str(tmp_path / "o"),
            ]
        )
