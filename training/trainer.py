"""``JudgeSFTTrainer``: TRL's ``SFTTrainer`` with three savings for short answers after long prompts.

1. The LM head scores only the answer positions (:mod:`training.lm_head`).
2. With ``eval_loss`` off, an evaluation runs only the verdict callback's forward pass instead of
   also running the loss loop over the same rows.
3. With ``cache_frozen_layers``, the layers below the LoRA adapters run once per training row, not
   once per epoch (:mod:`training.frozen_cache`).

A run whose loss or gradient norm stops being finite is stopped (``DivergenceCallback``) instead of
training on with NaN weights.

And one change of objective: with ``verdict_ids``, only the verdict token carries loss
(:mod:`training.verdict_loss`), scored among the verdict tokens by the answer-only head (over the
whole vocabulary where that head is not available).

Everything else (data preparation, assistant-only masks, padding-free batching, DeepSpeed, PEFT,
checkpoints) is TRL's and transformers' own code.
"""

from __future__ import annotations

import logging
from typing import Any

from peft import PeftModel
from trl import SFTTrainer

from training.callbacks import DivergenceCallback, VerdictMetricsCallback
from training.frozen_cache import FrozenLayerCache, frozen_bottom_layers
from training.lm_head import install_answer_only_head
from training.verdict_loss import VerdictOnlyCollator


__all__ = ["JudgeSFTTrainer"]

logger = logging.getLogger(__name__)


class JudgeSFTTrainer(SFTTrainer):
    """``SFTTrainer`` plus the options described in the module docstring.

    Args:
        answer_only_head: project only the labelled positions through the LM head.
        eval_loss: run the loss loop at each evaluation (otherwise only the callbacks run).
        cache_frozen_layers: replay the frozen bottom layers' output for rows seen before.
        verdict_ids: put the loss on the first of these tokens in each answer only (None: whole answer).
        *args: passed to ``SFTTrainer``.
        **kwargs: passed to ``SFTTrainer``.
    """

    def __init__(
        self,
        *args: Any,
        answer_only_head: bool = True,
        eval_loss: bool = True,
        cache_frozen_layers: bool = False,
        verdict_ids: set[int] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.add_callback(DivergenceCallback())
        self.eval_loss = eval_loss
        if verdict_ids:
            self.data_collator = VerdictOnlyCollator(self.data_collator, verdict_ids, self.processing_class)
        self.frozen_cache = None
        if cache_frozen_layers:
            frozen = frozen_bottom_layers(self.model)
            if frozen == 0:
                logger.warning("cache_frozen_layers: every layer has something to train (lora_layers covers all); off")
            else:
                self.frozen_cache = FrozenLayerCache(self.model, frozen)
                logger.info("frozen layer cache: the bottom %d layers run once per training row", frozen)
        self.answer_only_head = False
        if answer_only_head:
            base = self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model
            self.answer_only_head = install_answer_only_head(base, sorted(verdict_ids) if verdict_ids else None)
            if not self.answer_only_head:
                logger.info("answer_only_head: this model's LM head needs TRL's full path; using it")

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """TRL's training loop, after filling the frozen layer cache; reports what the cache saved."""
        cache = self.frozen_cache
        if cache is not None and self.train_dataset is not None:
            # The verdict judge's validation prompts too: it then runs only the adapted layers.
            probes = [
                probe.input_ids
                for callback in self.callback_handler.callbacks
                if isinstance(callback, VerdictMetricsCallback)
                for probe in callback.probes
                if probe.input_ids
            ]
            with self.accelerator.autocast():
                stored = cache.fill(
                    self.model,
                    [*self.train_dataset["input_ids"], *probes],
                    batch_size=2 * self.args.per_device_train_batch_size,
                    progress=not self.args.disable_tqdm and self.is_world_process_zero(),
                )
            logger.info(
                "frozen layer cache: stored %d distinct rows of %d training rows and %d validation prompts "
                "(%.0f MB), computing %d of their %d tokens (shared prefixes once)",
                stored,
                len(self.train_dataset),
                len(probes),
                cache.stored_bytes / 2**20,
                cache.fill_tokens_computed,
                cache.fill_tokens,
            )
        result = super().train(*args, **kwargs)
        if cache is not None:
            logger.info(
                "frozen layer cache: %d training rows replayed, %d computed (%.0f MB held)",
                cache.hits,
                cache.misses,
                cache.stored_bytes / 2**20,
            )
        return result

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """TRL's evaluation, or only the evaluation callbacks when ``eval_loss`` is off."""
        if self.eval_loss or eval_dataset is not None:
            return super().evaluate(
                eval_dataset=eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix
            )
        metrics: dict[str, float] = {}
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
