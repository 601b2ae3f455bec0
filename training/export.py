"""Export a tuned judge: copy the run's final files, or merge its LoRA adapter into the base weights.

A merged judge loads like any model (``from_pretrained``, vLLM, llama.cpp converters) with no PEFT
at inference; an unmerged export is small and loads on top of the base. Either way ``judge.json``
travels with it, so evaluation still knows the base model, prompt template and verdict words.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

from recipes.judge_card import JudgeCard
from recipes.models import resolve_model
from recipes.schema import DataError


__all__ = ["export_model"]

logger = logging.getLogger(__name__)

# Files of a finished run that make up the judge (checkpoints, optimizer state and logs stay behind).
_JUDGE_FILES = (
    "adapter_config.json",
    "adapter_model.safetensors",
    "config.json",
    "generation_config.json",
    "chat_template.jinja",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "README.md",
)


def _prepare_out(out_dir: Path, run_dir: Path) -> None:
    if out_dir.resolve() == run_dir.resolve():
        raise DataError(str(out_dir), None, "out", "a folder other than the run folder", str(out_dir))
    if out_dir.exists() and any(out_dir.iterdir()):
        raise DataError(str(out_dir), None, "out", "a new or empty folder (nothing is overwritten)", str(out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)


def _copy_judge(run_dir: Path, out_dir: Path) -> None:
    for name in _JUDGE_FILES:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, out_dir / name)
    for weights in list(run_dir.glob("model*.safetensors")) + list(run_dir.glob("model*.safetensors.index.json")):
        shutil.copy2(weights, out_dir / weights.name)


def _merge(run_dir: Path, out_dir: Path, card: JudgeCard) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = resolve_model(card.base_model)
    logger.info("merging the adapter in %s into %s", run_dir, base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype="auto", trust_remote_code=False)
    merged = PeftModel.from_pretrained(model, str(run_dir)).merge_and_unload()
    merged.save_pretrained(str(out_dir))
    AutoTokenizer.from_pretrained(str(run_dir), trust_remote_code=False).save_pretrained(str(out_dir))
    if (run_dir / "README.md").is_file():
        shutil.copy2(run_dir / "README.md", out_dir / "README.md")


def export_model(run_dir: str | Path, out_dir: str | Path, *, merge: bool) -> Path:
    """Write the judge of ``run_dir`` (a ``judgeforge train`` output folder) to ``out_dir``.

    Args:
        run_dir: the training run's ``output_dir`` (holds ``judge.json``).
        out_dir: a new or empty folder.
        merge: merge the LoRA adapter into the base weights (``judge.json`` then says
            ``adapter: false``). For a full fine-tune there is nothing to merge and the weights are copied.

    Returns:
        ``out_dir``.

    Raises:
        DataError: ``run_dir`` has no ``judge.json`` (or no adapter to merge), or ``out_dir`` is not empty.
    """
    run, out = Path(run_dir), Path(out_dir)
    card = JudgeCard.read(run)
    if card.adapter and not (run / "adapter_model.safetensors").is_file():
        raise DataError(str(run), None, "adapter_model.safetensors", "the LoRA adapter judge.json says is here", None)
    _prepare_out(out, run)
    if merge and card.adapter:
        _merge(run, out, card)
        card = dataclasses.replace(card, adapter=False)
    else:
        if merge:
            logger.info("%s holds full weights (no adapter): copying them", run)
        _copy_judge(run, out)
    card.write(out)
    logger.info("exported %s -> %s (%s)", run, out, "merged" if merge else "as trained")
    return out
