"""The one chat renderer: a judge conversation as the text a model reads, training and evaluation alike.

Training (the verdict probes) and evaluation (``hf``, ``vllm``, the second level) must feed a model
the same text for the same messages, or a tuned judge is evaluated on inputs it was not trained on.
A model's chat template is used when it has one; a template without a system role gets the system
turn folded into the user turn; a model without a chat template reads plain text.
"""

from __future__ import annotations

import logging
from typing import Any


__all__ = ["render_chat"]

logger = logging.getLogger(__name__)


def render_chat(tokenizer: Any, messages: list[dict[str, str]], answer_prefix: str = "") -> str:
    """The model input for ``messages`` with the assistant turn opened, ending with ``answer_prefix``."""
    if not getattr(tokenizer, "chat_template", None):
        body = "\n\n".join(m["content"] for m in messages)
        return f"{body}\n\nAnswer: {answer_prefix}"
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as error:  # jinja raises TemplateError for "System role not supported"
        if messages[0]["role"] != "system":
            raise
        logger.debug("chat template refused a system turn (%s); folding it into the user turn", error)
        merged = [{"role": "user", "content": messages[0]["content"] + "\n\n" + messages[1]["content"]}]
        text = tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
    return text + answer_prefix
