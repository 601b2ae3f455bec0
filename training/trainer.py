"""``JudgeSFTTrainer``: TRL's ``SFTTrainer`` with three savings for short answers after long prompts.

1. The LM head scores only the answer positions (:mod:`training.lm_head`).
2. With ``eval_loss`` off, an evaluation runs only the verdict callback's forward pass instead of
   also running the loss loop over the same rows.
3. With ``cache_frozen_layers``, the layers below the LoRA adapters run once per training row, not
   once per epoch (:mod:`training.frozen_cache`).

A run whose loss or gradient norm stops being finite is stopped (``DivergenceCallback``) instead of
training on with NaN weights.

And two changes of objective: with ``verdict_ids``, only the verdict token carries loss
(:mod:`training.verdict_loss`), scored among the verdict tokens by the answer-only head (over the
whole vocabulary where that head is not available); with ``consistency_weight``, a perturbed copy
is batched beside its clean row and their verdicts' disagreement is added to the loss
(:mod:`training.consistency`).

Everything else (data preparation, assistant-only masks, padding-free batching, DeepSpeed, PEFT,
checkpoints) is TRL's and transformers' own code.
"""

from __future__ import annotations

import logging
from typing import Any

from peft import PeftModel
from trl import SFTTrainer

from training.callbacks import DivergenceCallback, VerdictMetricsCallback
from training.consistency import GROUP_KEY, GroupCollator, PairedSampler, consistency_penalty
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
        consistency_weight: weight of the clean-copy disagreement term (0: off); the training set
            then needs an ``id`` column, and the batch size must be even.
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
        consistency_weight: float = 0.0,
        **kwargs: Any,
    ):
        self.consistency_weight = consistency_weight
        super().__init__(*args, **kwargs)
        if consistency_weight:
            size = self.args.per_device_train_batch_size
            if size % 2:
                raise ValueError(
                    "<config>: field 'per_device_train_batch_size': expected an even number with "
                    f"consistency_weight (a row and its copy share a batch), got {size}"
                )
            if self.train_dataset is None or "id" not in self.train_dataset.column_names:
                raise ValueError("consistency_weight: field 'id': expected an id column in the training rows")
        self.add_callback(DivergenceCallback())
        self.eval_loss = eval_loss
        if verdict_ids:
            self.data_collator = VerdictOnlyCollator(self.data_collator, verdict_ids, self.processing_class)
        if consistency_weight:
            self.data_collator = GroupCollator(self.data_collator)
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

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self.consistency_weight and "id" not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, "id"]  # the collator reads the groups from it

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        if not self.consistency_weight:
            return super()._get_train_sampler(train_dataset)
        rows = train_dataset if train_dataset is not None else self.train_dataset
        return PairedSampler(rows["id"], self.args.seed)

    def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False, num_items_in_batch: Any = None):
        """TRL's loss, plus ``consistency_weight`` x the disagreement of each clean row and its copies.

        The term is read from the same forward pass (a hook on the model keeps its outputs).
        """
        groups = inputs.pop(GROUP_KEY, None)
        if groups is None or not self.consistency_weight:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        seen: list[Any] = []
        hook = model.register_forward_hook(lambda _module, _args, output: seen.append(output))
        try:
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            hook.remove()
        outputs = next((o for o in reversed(seen) if hasattr(o, "log_probs")), None)
        if outputs is None:
            raise ValueError("consistency_weight: needs TRL's fused LM head (log_probs), which this loss path skips")
        penalty = consistency_penalty(outputs.log_probs, outputs.label_mask.to(outputs.log_probs.dtype), groups)
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["consistency"].append(float(penalty.detach()))
        term = self.consistency_weight * penalty
        if self._loss_scaled_for_accumulation(num_items_in_batch):
            # TRL's part is already a mean over the accumulated micro-batches; make this one a mean too.
            term = term / self.current_gradient_accumulation_steps
        if return_outputs:
            loss, rest = result
            return loss + term, rest
        return result + term

    def _loss_scaled_for_accumulation(self, num_items_in_batch: Any) -> bool:
        """``Trainer.training_step``'s own test of whether it will still divide the loss by the accumulation steps."""
        if self.loss_is_scaled_for_ga is not None:
            return bool(self.loss_is_scaled_for_ga)
        by_count = bool(self.model_accepts_loss_kwargs and num_items_in_batch is not None)
        return by_count or self.compute_loss_func is not None

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
