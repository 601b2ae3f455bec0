"""A training chat template whose ``{% generation %}`` markers put the loss on the verdict only.

TRL's ``assistant_only_loss`` trains only on the tokens a chat template marks with
``{% generation %}``. Most shipped templates have no markers: TRL swaps in a marked variant for the
families it knows (Qwen, Llama 3, Gemma, ...), and judgeforge adds a marked ChatML template for
the rest of the ChatML family (SmolLM2 among them). Before a template is used it is checked to
render the same text as the model's own template, so the judge never trains on a format it will
not see at inference, and to put the end-of-turn token inside the trained span, so the judge
learns to stop after its verdict.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from trl.chat_template_utils import (
    get_training_chat_template,
    has_generation_markers,
    is_chat_template_stop_token_trained,
)


__all__ = ["CHATML_GENERATION", "ChatTemplateError", "install_training_template"]

logger = logging.getLogger(__name__)

CHATML_GENERATION = Path(__file__).parent / "chat_templates" / "chatml_generation.jinja"
_PROBE = [
    {"role": "system", "content": "You are a judge."},
    {"role": "user", "content": "<victim_response>\nHello.\n</victim_response>"},
    {"role": "assistant", "content": '{"verdict": "SAFE"}'},
]


class ChatTemplateError(ValueError):
    """The model's chat template cannot mark the answer tokens for an answer-only loss."""


def _render(tokenizer: Any, template: str, messages: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=generation_prompt
    )


def _same_rendering(tokenizer: Any, original: str, training: str) -> bool:
    return _render(tokenizer, original, _PROBE, False) == _render(tokenizer, training, _PROBE, False) and _render(
        tokenizer, original, _PROBE[:2], True
    ) == _render(tokenizer, training, _PROBE[:2], True)


def _is_chatml(tokenizer: Any, template: str) -> bool:
    vocab = tokenizer.get_vocab()
    return "<|im_start|>" in template and "<|im_start|>" in vocab and "<|im_end|>" in vocab


def install_training_template(tokenizer: Any, name: str = "<model>") -> str | None:
    """Give ``tokenizer`` a chat template with generation markers; return the template it had.

    The caller restores the returned template before saving, so the tuned judge ships with its
    model's own template. Returns None when the tokenizer's template already had markers.

    Raises:
        ChatTemplateError: the tokenizer has no template, no marked variant is known for it, the
            variant renders different text, or the end-of-turn token would not be trained.
    """
    original = tokenizer.chat_template
    if not isinstance(original, str) or not original.strip():
        raise ChatTemplateError(
            f"{name}: field 'chat_template': expected a chat template (judge prompts are conversations), got "
            f"{type(original).__name__}; set chat_template_path to a .jinja file with {{% generation %}} markers"
        )
    if has_generation_markers(original):
        training = None
    else:
        try:
            training = get_training_chat_template(tokenizer)
        except ValueError:
            training = CHATML_GENERATION.read_text(encoding="utf-8") if _is_chatml(tokenizer, original) else None
        if training is None:
            raise ChatTemplateError(
                f"{name}: field 'chat_template': expected a template TRL or judgeforge can mark with "
                "{% generation %} (ChatML, Qwen, Llama 3, Gemma, Phi, ...), got an unknown template; set "
                "chat_template_path to a .jinja file with {% generation %} markers"
            )
        if not _same_rendering(tokenizer, original, training):
            raise ChatTemplateError(
                f"{name}: field 'chat_template': expected the marked training template to render the same text "
                "as the model's own template, got a different rendering; set chat_template_path to a .jinja file "
                "with {% generation %} markers that matches the model's format"
            )
        tokenizer.chat_template = training
    if not is_chat_template_stop_token_trained(tokenizer):
        raise ChatTemplateError(
            f"{name}: field 'chat_template': expected the end-of-turn token inside the {{% generation %}} span "
            "(the judge must learn to stop after its verdict), got a template that leaves it out"
        )
    if training is not None:
        logger.info("training with a chat template that marks the answer tokens (%s)", name)
        return original
    return None
