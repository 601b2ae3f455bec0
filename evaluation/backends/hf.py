"""The local ``transformers`` judge: base models, LoRA adapters, merged models and tuned judges.

A verdict-first template (``basic``, ``criteria``, ``few_shot``, ``score``) is read from the logits
of the first token of each answer choice after the fixed answer prefix (``{"verdict": "``), in one
forward pass, which also gives P(positive). ``cot`` (or ``options.read: generate``) generates and
parses with ``recipes.verdict``. Either way the system part of the prompt, which every example of
a category shares, is computed once and its cache reused (see :mod:`evaluation.backends.hf_engine`).

Spec options: ``read`` (``auto`` | ``logits`` | ``generate``), ``dtype`` (``auto`` default:
bfloat16 where the device computes it natively, a recent GPU or a CPU with AVX-512 BF16 / AMX, else
float32; ``float32``, ``bfloat16``, or ``float16`` on CUDA only), ``device`` (``auto``; ``map``
spreads a large model over every visible GPU), ``prefix_cache`` (True), ``max_batch_tokens`` (rows x
positions per batch, the bound on cache memory: 8192 on a CPU, 16384 on a GPU), ``float32_head`` (True:
a 16-bit model projects onto the vocabulary in float32, so P(positive) is not coarsely rounded),
``force_prefix`` (True: generation also starts after the answer prefix), ``seed``, ``budget``.
"""

from __future__ import annotations

import logging
import math

from evaluation.backends.base import Completion, PromptJudge
from evaluation.backends.hf_loading import LoadedModel, load_causal_lm, load_spec_model, spec_engine, stop_token_ids
from evaluation.backends.options import HFOptions, options_from
from evaluation.types import JudgeSpec
from recipes.chat import render_chat
from recipes.choices import ChoiceError, choice_token_ids
from recipes.prompts import RenderedPrompt


__all__ = ["HFJudge", "LoadedModel", "load_causal_lm", "stop_token_ids"]

logger = logging.getLogger(__name__)

_SENTINEL = "@@judgeforge-user-turn@@"


class HFJudge(PromptJudge):
    """A judge run locally with transformers (see the module docstring for its options)."""

    options_class = HFOptions

    def __init__(self, spec: JudgeSpec, *, loaded: LoadedModel | None = None):
        options = options_from(HFOptions, spec.options, "<judge spec>")
        loaded = loaded or load_spec_model(spec.model, options)
        card = loaded.card
        super().__init__(
            spec,
            template=card.prompt_template if card else None,
            verdict_words=card.verdict_words if card else None,
            budget=card.field_budget() if card and options.budget is None else None,
            threshold=card.threshold if card else None,
            thresholds=card.thresholds if card else None,
            options=options,
            render=card.render if card and "render" not in spec.options else None,
        )
        self.model, self.tokenizer, self.card = loaded.model, loaded.tokenizer, card
        self.read = options.read
        self.force_prefix = options.force_prefix
        self.engine = spec_engine(loaded, spec.batch_size, options)
        self.stop_ids = stop_token_ids(self.tokenizer, self.model)
        self._system_prefix: dict[tuple[str, str], str] = {}
        self._choice_ids: dict[tuple[str, tuple[str, ...]], list[int] | None] = {}

    def _prefix_of(self, prompt: RenderedPrompt) -> str | None:
        """The rendered text of everything before the user's content: what all examples share."""
        system = prompt.messages[0]
        if system["role"] != "system":
            return None
        key = (system["content"], prompt.messages[1]["role"])
        if key not in self._system_prefix:
            probe = [system, {"role": prompt.messages[1]["role"], "content": _SENTINEL}]
            text = render_chat(self.tokenizer, probe)
            cut = text.find(_SENTINEL)
            self._system_prefix[key] = text[:cut] if cut > 0 else ""
        return self._system_prefix[key] or None

    def choice_ids(self, prompt: RenderedPrompt) -> list[int] | None:
        """First-token ids of the answer choices, or None when they cannot be told apart."""
        prefix = prompt.template.answer_prefix
        key = (prefix, tuple(prompt.choices))
        if key not in self._choice_ids:
            try:
                self._choice_ids[key] = choice_token_ids(self.tokenizer, prefix, prompt.choices)
            except ChoiceError as error:
                if self.read == "logits":
                    raise
                logger.warning("%s: %s; generating the verdict instead", self.name, error)
                self._choice_ids[key] = None
        return self._choice_ids[key]

    def reads_logits(self, prompt: RenderedPrompt) -> bool:
        """Whether this prompt's verdict is read from logits (verdict first, choices separable)."""
        if self.read == "generate" or not prompt.template.verdict_first:
            if self.read == "logits":
                raise ValueError(f"{self.name}: template '{prompt.template.name}' is not verdict-first")
            return False
        return self.choice_ids(prompt) is not None

    def complete(self, prompts: list[RenderedPrompt], *, seed: int, ids: list[str] | None = None) -> list[Completion]:
        """Read from logits when the template allows, generate otherwise."""
        completions: list[Completion | None] = [None] * len(prompts)
        by_mode: dict[bool, list[int]] = {True: [], False: []}
        for i, prompt in enumerate(prompts):
            by_mode[self.reads_logits(prompt)].append(i)
        if by_mode[True]:
            self._read(prompts, by_mode[True], completions)
        if by_mode[False]:
            self._generate(prompts, by_mode[False], completions, seed)
        return [c if c is not None else Completion(error="no answer") for c in completions]

    def _read(self, prompts: list[RenderedPrompt], indices: list[int], completions: list) -> None:
        texts = [render_chat(self.tokenizer, prompts[i].messages, prompts[i].template.answer_prefix) for i in indices]
        ids = [self.choice_ids(prompts[i]) for i in indices]
        prefixes = [self._prefix_of(prompts[i]) for i in indices]
        for i, out in zip(indices, self.engine.next_token_logprobs(texts, ids, prefixes=prefixes)):
            if out.error:
                completions[i] = Completion(error=out.error, tokens=out.tokens)
                continue
            top = max(out.logprobs)
            weights = [math.exp(lp - top) for lp in out.logprobs]
            total = sum(weights)
            completions[i] = Completion(choice_probs=[w / total for w in weights], tokens=out.tokens)

    def _generate(self, prompts: list[RenderedPrompt], indices: list[int], completions: list, seed: int) -> None:
        starts = [
            prompts[i].template.answer_prefix if self.force_prefix and prompts[i].template.verdict_first else ""
            for i in indices
        ]
        texts = [render_chat(self.tokenizer, prompts[i].messages, s) for i, s in zip(indices, starts)]
        prefixes = [self._prefix_of(prompts[i]) for i in indices]
        outs = self.engine.generate(
            texts,
            prefixes=prefixes,
            max_new_tokens=self.spec.max_new_tokens,
            temperature=self.spec.temperature,
            seed=seed,
            stop_ids=self.stop_ids,
        )
        for i, start, out in zip(indices, starts, outs):
            completions[i] = Completion(text=start + out.text, tokens=out.tokens, error=out.error)
