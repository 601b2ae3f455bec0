"""Loading a local judge model with transformers, its inference engine, and the tokens that end an answer.

Shared by the ``hf`` backend and the guards, which read verdicts from the same kind of model in the
same way; neither imports the other.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from evaluation.backends.hf_engine import CausalEngine
from evaluation.backends.options import LocalModelOptions
from recipes.judge_card import JUDGE_CARD, JudgeCard
from recipes.models import fast_bf16, resolve_model


__all__ = ["LoadedModel", "load_causal_lm", "load_spec_model", "spec_engine", "stop_token_ids"]

logger = logging.getLogger(__name__)

_STOP_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "</s>")


@dataclass
class LoadedModel:
    """A model ready for inference, its tokenizer, and the tuned-judge card if there is one."""

    model: Any
    tokenizer: Any
    card: JudgeCard | None
    source: str


def _torch_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if fast_bf16(device) else torch.float32
    if name in ("float32", "fp32"):
        return torch.float32
    wanted = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if name not in wanted:
        raise ValueError(
            f"<judge spec>: field 'options.dtype': expected auto, float32, bfloat16 or float16, got {name!r}"
        )
    if device.startswith("cuda") or (wanted[name] == torch.bfloat16 and fast_bf16(device)):
        return wanted[name]
    logger.warning("dtype %s asked for on %s; computing in float32 (no native support there)", name, device)
    return torch.float32


def _resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))


def _float32_head(model: Any) -> None:
    """Give a bfloat16 / float16 model a float32 copy of its output projection.

    A verdict read from logits is a softmax over two of them. Logits of 20 or so in bfloat16 are
    rounded to 1/8, which leaves P(positive) a few dozen distinct values: too coarse to choose a
    threshold from. The copy (vocabulary x hidden size in float32) is untied from the input
    embeddings, which stay in the model's dtype; the head's input is upcast.
    """
    import torch

    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear) or head.weight.dtype == torch.float32:
        return
    wide = torch.nn.Linear(
        head.in_features, head.out_features, bias=head.bias is not None, device=head.weight.device, dtype=torch.float32
    )
    with torch.no_grad():
        wide.weight.copy_(head.weight.float())
        if head.bias is not None:
            wide.bias.copy_(head.bias.float())
    wide.register_forward_pre_hook(lambda module, args: (args[0].float(), *args[1:]))
    model.set_output_embeddings(wide)


@lru_cache(maxsize=1)
def load_causal_lm(name: str, dtype: str = "auto", device: str = "auto", float32_head: bool = True) -> LoadedModel:
    """Load a judge model by alias, hub id, folder, LoRA adapter folder or tuned-judge folder.

    Cached (one model), so five prompts on one model load it once; a second model replaces the first
    rather than joining it, since a reload from the local cache takes seconds and a resident copy
    costs its whole size in peak memory. ``float32_head``: project onto
    the vocabulary in float32 when the model computes in a 16-bit type (see :func:`_float32_head`).

    Raises:
        ValueError: when a folder is neither a model, an adapter nor a tuned judge.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # `map`: a model too large for one GPU is spread over every GPU this process sees (device_map).
    placement = {"device_map": "auto"} if device == "map" else {}
    device = "cuda" if placement else _resolve_device(device)
    torch_dtype = _torch_dtype(dtype, device)
    folder = Path(name)
    card = JudgeCard.read(folder) if (folder / JUDGE_CARD).is_file() else None
    adapter = folder.is_dir() and (folder / "adapter_config.json").is_file()
    if folder.is_dir() and not adapter and not (folder / "config.json").is_file():
        raise ValueError(
            f"{folder}: field 'model': expected a model folder (config.json), a LoRA adapter "
            f"(adapter_config.json) or a tuned judge (judge.json), got a folder with neither"
        )
    if adapter:
        from peft import PeftModel

        base = (
            card.base_model
            if card
            else json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
        )
        base_path = resolve_model(base)
        model = AutoModelForCausalLM.from_pretrained(
            base_path, dtype=torch_dtype, trust_remote_code=False, **placement
        )
        # Merged for inference: the same outputs as the adapter, without its per-layer overhead.
        model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
        tokenizer = AutoTokenizer.from_pretrained(
            str(folder) if _has_tokenizer(folder) else base_path, trust_remote_code=False
        )
    else:
        path = resolve_model(name)
        # Remote code is never run: a model folder that ships Python is refused, never asked about.
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, trust_remote_code=False, **placement)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not placement:
        model.to(device)
    model.eval()
    if float32_head:
        _float32_head(model)
    return LoadedModel(model=model, tokenizer=tokenizer, card=card, source=name)


def load_spec_model(model: str, options: LocalModelOptions) -> LoadedModel:
    """The model a judge spec names, loaded with its ``dtype``, ``device`` and ``float32_head`` options."""
    return load_causal_lm(model, options.dtype, options.device, options.float32_head)


# Cached positions per batch when the judge does not say. On a CPU a batch's cache and attention
# buffers decide the process's peak memory (16384 positions of SmolLM2-135M in float32: about 1.4 GB
# above the model, 8192: about 0.75 GB), while throughput barely changes once a batch holds a few
# thousand positions; a GPU has the memory and gains from the larger batch.
CPU_BATCH_TOKENS, GPU_BATCH_TOKENS = 8192, 16384


def spec_engine(loaded: LoadedModel, batch_size: int, options: LocalModelOptions) -> CausalEngine:
    """The inference engine of a judge: ``batch_size`` and the ``prefix_cache`` / ``max_batch_tokens`` options."""
    max_batch_tokens = options.max_batch_tokens
    if max_batch_tokens is None:
        on_cpu = next(loaded.model.parameters()).device.type == "cpu"
        max_batch_tokens = CPU_BATCH_TOKENS if on_cpu else GPU_BATCH_TOKENS
    return CausalEngine(
        loaded.model,
        loaded.tokenizer,
        batch_size=batch_size,
        prefix_cache=options.prefix_cache,
        max_batch_tokens=max_batch_tokens,
    )


def stop_token_ids(tokenizer: Any, model: Any = None) -> list[int]:
    """Ids that end a judge's answer: EOS, the model's configured EOS ids and end-of-turn tokens."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif isinstance(configured, list | tuple):
        ids.update(int(i) for i in configured)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in _STOP_TOKENS if token in vocab)
    return sorted(ids)
