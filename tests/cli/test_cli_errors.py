"""The console entry point: expected errors become one line on stderr and exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from judgeforge.cli import main


REPO = Path(__file__).resolve().parents[2]


def test_a_data_error_is_one_line_and_exit_code_2(tmp_path, capsys):
    assert main(["data", "show", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        line for line in err.splitlines() if "data_card.json" in line
    ]
    assert "data_card.json" in err


def test_debug_log_level_shows_the_traceback(tmp_path, capsys):
    assert main(["--log-level", "DEBUG", "data", "show", str(tmp_path)]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_a_missing_file_is_exit_code_2(tmp_path, capsys):
    code = main(["judge", "--judge", "x", "--category", "jailbreak", "--input", str(tmp_path / "none.csv"),
                 "--out", str(tmp_path / "o.jsonl")])  # fmt: skip
    assert code == 2
    assert "none.csv" in capsys.readouterr().err


def test_keyboard_interrupt_is_exit_code_130(monkeypatch, tmp_path, capsys):
    from recipes import builders

    def interrupted(folder):
        raise KeyboardInterrupt

    monkeypatch.setattr(builders.DataCard, "read", staticmethod(interrupted))
    assert main(["data", "show", str(tmp_path)]) == 130
    assert "Traceback" not in capsys.readouterr().err


def test_the_console_script_prints_no_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "judgeforge.cli", "data", "show", str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "data_card.json" in done.stderr


@pytest.mark.parametrize("argv", [["data", "show", "--help"]])
def test_help_still_exits_0(argv):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 0
