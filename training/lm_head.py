"""An LM head that scores only the positions that carry loss.

A judge's training example is a few hundred prompt tokens followed by a dozen answer tokens, and
only the answer carries loss. TRL's fused LM head projects just those positions on CUDA (its
Triton path) but every position elsewhere, and on a CPU the projection onto SmolLM2's 49k-token
vocabulary costs about a fifth of the forward pass, plus as much again backward. This module wraps
the forward that TRL installed so that, when TRL asks for the fused head, the LM head sees only the
labelled positions. It returns TRL's own output type with the same fields, so ``SFTTrainer``'s
loss, entropy and token-accuracy code is unchanged. Models with logit soft-capping or scaling, MoE
router losses, and pre-shifted labels (context parallelism) keep TRL's path.

Given ``choice_ids`` (the verdict tokens, with the loss on the verdict token only), the head
scores just those rows of the output embedding: the loss is the cross-entropy among the verdict
words, which is what evaluation reads (P(positive) is a softmax over the two words). The rest of
the vocabulary carries no gradient, so none is spent on keeping it below the verdict words, which
the base model does already after the forced answer prefix.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

import torch
from trl.trainer.utils import FusedCausalLMOutput


__all__ = ["install_answer_only_head", "supports_answer_only_head"]

_UNSUPPORTED = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


def supports_answer_only_head(model: Any) -> bool:
    """Whether the plain ``log_softmax(hidden @ W)`` head is exactly the model's head."""
    config = model.config.get_text_config()
    if any(getattr(config, name, None) is not None for name in _UNSUPPORTED):
        return False
    return not hasattr(config, "output_router_logits")


def install_answer_only_head(model: Any, choice_ids: Sequence[int] | None = None) -> bool:
    """Wrap ``model.forward`` (already patched by TRL's ``add_fused_lm_head``); return whether it was.

    Args:
        model: the causal LM itself (for a PEFT model, ``peft_model.get_base_model()``).
        choice_ids: score only these tokens; every labelled position must hold one of them.
    """
    if not supports_answer_only_head(model):
        return False
    fused_forward = model.forward
    choices = torch.tensor(sorted(set(choice_ids))) if choice_ids else None

    def _forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head or labels is None or shift_labels is not None:
            return fused_forward(
                *args,
                fused_lm_head=fused_lm_head,
                labels=labels,
                shift_labels=shift_labels,
                num_items_in_batch=num_items_in_batch,
                **kwargs,
            )
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        targets = labels[:, 1:].to(hidden.device)
        mask = targets != -100
        picked = targets[mask]
        head = self.get_output_embeddings()
        if choices is None:
            logits = head(hidden[mask]).float()
        else:
            rows = choices.to(picked.device)
            position = torch.searchsorted(rows, picked)
            if bool((position >= len(rows)).any()) or not torch.equal(rows[position.clamp(max=len(rows) - 1)], picked):
                raise ValueError("answer-only head: field 'labels': expected only verdict tokens, got others")
            bias = head.bias[rows] if getattr(head, "bias", None) is not None else None
            logits = torch.nn.functional.linear(hidden[mask], head.weight[rows], bias).float()
            picked = position
        log_norm = torch.logsumexp(logits, dim=-1)
        token_log_probs = logits.gather(-1, picked.unsqueeze(-1)).squeeze(-1) - log_norm
        with torch.no_grad():
            probs = torch.exp(logits - log_norm.unsqueeze(-1))
            entropy = log_norm - (probs * logits).sum(-1)
            is_top1 = (logits.argmax(-1) == picked).float()

        def spread(values: torch.Tensor) -> torch.Tensor:
            return values.new_zeros(mask.shape).masked_scatter(mask, values)

        denominator = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(
            loss=-token_log_probs.sum() / denominator,
            log_probs=spread(token_log_probs),
            entropy=spread(entropy),
            is_top1=spread(is_top1),
            label_mask=mask,
        )

    model.forward = types.MethodType(_forward, model)
    return True
