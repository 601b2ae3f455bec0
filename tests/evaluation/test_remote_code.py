"""A model folder that ships Python code is refused, never run and never asked about, even on a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[2]

_CODE = """
from pathlib import Path
Path(__file__).with_name("RAN").write_text("remote code ran")
from transformers import LlamaConfig
class EvilConfig(LlamaConfig):
    model_type = "evil_remote"
"""

LOADERS = {
    "hf_backend": "from evaluation.backends.hf import load_causal_lm; load_causal_lm({folder!r}, device='cpu')",
    "pipeline_config": (
        "from judgeforge.pipeline import _fit_lora_layers; import pathlib; "
        "p = pathlib.Path({folder!r}).parent / 'c.yaml'; p.write_text('lora_layers: 99'); "
        "_fit_lora_layers(str(p), {folder!r})"
    ),
}


def _remote_code_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "evil"
    folder.mkdir()
    config = {
        "model_type": "evil_remote",
        "auto_map": {"AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.M"},
        "vocab_size": 32,
        "hidden_size": 8,
        "num_hidden_layers": 1,
        "num_attention_heads": 1,
        "intermediate_size": 8,
    }
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "configuration_evil.py").write_text(_CODE, encoding="utf-8")
    (folder / "modeling_evil.py").write_text(_CODE, encoding="utf-8")
    return folder


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_remote_code_is_refused_on_a_terminal_even_when_the_user_would_say_yes(tmp_path, loader):
    folder = _remote_code_folder(tmp_path)
    master, slave = pty.openpty()
    os.write(master, b"y\ny\ny\n")  # what a user at a terminal would answer to transformers' [y/N]
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    done = subprocess.run(
        [sys.executable, "-c", LOADERS[loader].format(folder=str(folder))],
        stdin=slave, capture_output=True, text=True, env=env, timeout=240,
    )  # fmt: skip
    os.close(slave)
    os.close(master)
    assert not (folder / "RAN").exists() and not list((tmp_path / "modules").rglob("RAN"))
    assert done.returncode != 0
    assert "trust_remote_code" in done.stderr
    assert "[y/N]" not in done.stdout + done.stderr
