"""Checks that run before training starts, and the check of what a run saved.

Each failure is a ``ValueError`` subclass whose message names the setting at fault and says what
to do instead, so a bad config fails in seconds rather than after a model download or ten minutes
of training.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from recipes.models import ALIASES, resolve_model
from training.configs import deepspeed_requested


__all__ = [
    "AdapterSaveError",
    "ConfigError",
    "check_output_dir",
    "check_quantization",
    "check_saved_adapter",
    "last_complete_checkpoint",
    "load_model_config",
    "zero_stage",
]


class ConfigError(ValueError):
    """A training setting that cannot work, reported as ``<where>: field '<name>': expected ..., got ...``."""

    def __init__(self, where: str, name: str, expected: str, got: Any):
        super().__init__(f"{where}: field '{name}': expected {expected}, got {got!r}")


class AdapterSaveError(RuntimeError):
    """The saved LoRA adapter is empty or does not match the trained one."""


def check_output_dir(output_dir: str | None) -> Path:
    """Create ``output_dir`` if needed and prove a file can be written there."""
    if not output_dir:
        raise ConfigError("<config>", "output_dir", "a folder for checkpoints and the tuned judge", output_dir)
    folder = Path(output_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ConfigError("<config>", "output_dir", "a writable folder", f"{folder} ({error.strerror})") from error
    return folder


def load_model_config(name: str | None, *, revision: str = "main", trust_remote_code: bool = False) -> tuple[str, Any]:
    """Resolve a model name (alias, folder or hub id) and load its config, or say why it cannot be.

    Returns:
        ``(path_or_id, config)``: what ``from_pretrained`` should load, and the model config.
    """
    from transformers import AutoConfig

    if not name:
        raise ConfigError(
            "<config>", "model_name_or_path", f"a hub id, a local folder or an alias {sorted(ALIASES)}", name
        )
    resolved = resolve_model(name)
    if Path(resolved).exists() and not (Path(resolved) / "config.json").is_file():
        raise ConfigError("<config>", "model_name_or_path", "a model folder holding config.json", resolved)
    try:
        config = AutoConfig.from_pretrained(resolved, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        expected = f"a local model folder, an alias {sorted(ALIASES)}, or a hub id reachable from here"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError("<config>", "model_name_or_path", expected, f"{name} ({first_line})") from error
    return resolved, config


def zero_stage(training_args: Any) -> int | None:
    """The DeepSpeed ZeRO stage of this run (from ``--deepspeed`` or ``accelerate launch``), else None.

    Raises:
        ConfigError: DeepSpeed was asked for together with ``use_cpu`` (or ``ACCELERATE_USE_CPU``),
            which makes accelerate skip DeepSpeed while the model is already partitioned for it.
    """
    plugin = getattr(training_args, "deepspeed_plugin", None)
    if deepspeed_requested(training_args) and (
        training_args.use_cpu or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    ):
        raise ConfigError(
            "<config>",
            "use_cpu",
            "false under DeepSpeed (DeepSpeed runs on a CPU through its own CPU accelerator); unset use_cpu "
            "and ACCELERATE_USE_CPU",
            True,
        )
    return int(plugin.zero_stage) if plugin is not None else None


def check_quantization(model_args: Any, stage: int | None) -> None:
    """QLoRA needs a CUDA GPU, bitsandbytes, a LoRA adapter, and a ZeRO stage below 3."""
    bits = "load_in_4bit" if model_args.load_in_4bit else "load_in_8bit" if model_args.load_in_8bit else None
    if bits is None:
        return
    if not model_args.use_peft:
        raise ConfigError(
            "<config>", bits, "use_peft: true (a quantized base can only be tuned through an adapter)", False
        )
    if not torch.cuda.is_available():
        raise ConfigError(
            "<config>",
            bits,
            "a CUDA GPU (bitsandbytes' 4/8-bit kernels run on GPUs); on this machine train plain LoRA "
            f"with {bits}: false",
            "no CUDA device",
        )
    if stage == 3:
        raise ConfigError(
            "<config>",
            bits,
            "DeepSpeed ZeRO-2 or no DeepSpeed: ZeRO-3 shards every parameter across processes, but "
            "bitsandbytes packs quantized weights into uint8 blocks with separate quantization state that ZeRO-3 "
            "does not shard and regather with them (runs fail or save empty adapters). A 4-bit base already fits "
            "one GPU for the models QLoRA is for: launch with training/accelerate/zero2.yaml, or keep ZeRO-3 and "
            f"set {bits}: false for plain LoRA",
            "ZeRO-3",
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ImportError(f"{bits} needs bitsandbytes: pip install bitsandbytes")


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` that finished saving (its ``trainer_state.json`` is written last).

    A run killed while writing a checkpoint leaves a folder without it; resuming from that folder
    would fail, so it is skipped.
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    candidates = []
    for child in folder.iterdir():
        name = child.name
        if child.is_dir() and name.startswith("checkpoint-") and name.removeprefix("checkpoint-").isdigit():
            candidates.append((int(name.removeprefix("checkpoint-")), child))
    for _, child in sorted(candidates, reverse=True):
        if (child / "trainer_state.json").is_file():
            return str(child)
    return None


def check_saved_adapter(folder: str | Path, expected_tensors: int | None = None) -> int:
    """Check the LoRA adapter saved in ``folder`` is not empty and loads; return its tensor count.

    ZeRO-3 partitions parameters across processes; an adapter saved without gathering them holds
    zero-size tensors (TRL and PEFT have shipped that bug). This catches it at save time.

    Raises:
        AdapterSaveError: no adapter file, an empty tensor, or fewer tensors than the trained adapter has.
    """
    from peft import PeftConfig
    from safetensors import safe_open

    path = Path(folder) / "adapter_model.safetensors"
    if not path.is_file() or path.stat().st_size == 0:
        raise AdapterSaveError(f"{folder}: no adapter_model.safetensors was saved")
    PeftConfig.from_pretrained(str(folder))
    count = 0
    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
            tensor = handle.get_tensor(key)
            if tensor.numel() == 0:
                raise AdapterSaveError(
                    f"{path}: tensor {key} is empty {tuple(tensor.shape)}: the adapter was saved without gathering "
                    "ZeRO-3 partitions; set stage3_gather_16bit_weights_on_model_save: true in the DeepSpeed config"
                )
            count += 1
    if count == 0 or (expected_tensors is not None and count < expected_tensors):
        raise AdapterSaveError(f"{path}: holds {count} tensors, expected {expected_tensors or 'at least one'}")
    return count
