"""``JudgeSFTTrainer``: TRL's ``SFTTrainer`` with two savings for short answers after long prompts.

1. The LM head scores only the answer positions (:mod:`training.lm_head`).
2. With ``eval_loss`` off, an evaluation runs only the verdict callback's forward pass instead of
   also running the loss loop over the same rows.

Everything else (data preparation, assistant-only masks, padding-free batching, DeepSpeed, PEFT,
checkpoints) is TRL's and transformers' own code.
"""

from __future__ import annotations

import logging
from typing import Any

from peft import PeftModel
from trl import SFTTrainer

from training.lm_head import install_answer_only_head


__all__ = ["JudgeSFTTrainer"]

logger = logging.getLogger(__name__)


class JudgeSFTTrainer(SFTTrainer):
    """``SFTTrainer`` plus ``answer_only_head`` and ``eval_loss`` (see the module docstring).

    Args:
        answer_only_head: project only the labelled positions through the LM head.
        eval_loss: run the loss loop at each evaluation (otherwise only the callbacks run).
        *args: passed to ``SFTTrainer``.
        **kwargs: passed to ``SFTTrainer``.
    """

    def __init__(self, *args: Any, answer_only_head: bool = True, eval_loss: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.eval_loss = eval_loss
        self.answer_only_head = False
        if answer_only_head:
            base = self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model
            self.answer_only_head = install_answer_only_head(base)
            if not self.answer_only_head:
                logger.info("answer_only_head: this model's LM head needs TRL's full path; using it")

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """TRL's evaluation, or only the evaluation callbacks when ``eval_loss`` is off."""
        if self.eval_loss or eval_dataset is not None:
            return super().evaluate(
                eval_dataset=eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix
            )
        metrics: dict[str, float] = {}
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
