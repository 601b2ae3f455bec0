"""vLLM in process: the same judge as ``hf``, for GPU machines (optional extra, imported lazily).

Verdict-first templates ask vLLM for one token with the top log-probabilities and read the answer
choices' first tokens from them; other templates generate. vLLM's automatic prefix caching does
what the ``hf`` engine's shared-prefix cache does by hand. Never imported on CPU test machines.

Spec options: ``dtype`` (``auto``), ``gpu_memory_utilization`` (0.85), ``max_model_len`` (8192),
``logprobs`` (20: how many alternatives to ask for when reading a verdict), ``seed``, ``budget``.
"""

from __future__ import annotations

import math
from typing import Any

from evaluation.backends.base import Completion, PromptJudge
from evaluation.backends.options import VLLMOptions
from evaluation.types import JudgeSpec
from recipes.chat import render_chat
from recipes.choices import ChoiceError, choice_token_ids
from recipes.models import resolve_model
from recipes.prompts import RenderedPrompt


__all__ = ["PIP_LINE", "VLLMJudge", "import_vllm"]

PIP_LINE = 'pip install "judgeforge[vllm]"  (or: pip install "vllm>=0.10"; needs a CUDA GPU)'


def import_vllm() -> Any:
    """Import vLLM, or explain how to install it."""
    try:
        import vllm
    except ImportError as error:
        raise ImportError(f"the vllm backend needs vLLM, an optional extra: {PIP_LINE}") from error
    return vllm


class VLLMJudge(PromptJudge):
    """A judge run by vLLM in this process."""

    options_class = VLLMOptions

    def __init__(self, spec: JudgeSpec):
        vllm = import_vllm()
        super().__init__(spec)
        options = self.options
        self._vllm = vllm
        self.llm = vllm.LLM(
            model=resolve_model(spec.model),
            dtype=options.dtype,
            seed=self.seed,
            gpu_memory_utilization=options.gpu_memory_utilization,
            max_model_len=options.max_model_len,
            tensor_parallel_size=options.tensor_parallel_size,
            enable_prefix_caching=True,
            trust_remote_code=False,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.top = options.logprobs

    def _text(self, prompt: RenderedPrompt, answer_prefix: str) -> str:
        return render_chat(self.tokenizer, prompt.messages, answer_prefix)

    def complete(self, prompts: list[RenderedPrompt], *, seed: int, ids: list[str] | None = None) -> list[Completion]:
        """Read verdicts from top log-probabilities where possible, generate otherwise."""
        results: list[Completion | None] = [None] * len(prompts)
        read, generate = [], []
        for i, prompt in enumerate(prompts):
            try:
                ids_ = choice_token_ids(self.tokenizer, prompt.template.answer_prefix, prompt.choices)
            except ChoiceError:
                ids_ = None
            (read if prompt.template.verdict_first and ids_ else generate).append((i, ids_))
        if read:
            params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=self.top)
            texts = [self._text(prompts[i], prompts[i].template.answer_prefix) for i, _ in read]
            for (i, choice_ids), out in zip(read, self.llm.generate(texts, params, use_tqdm=False)):
                top = out.outputs[0].logprobs[0] if out.outputs[0].logprobs else {}
                values = [top[t].logprob if t in top else -math.inf for t in choice_ids]
                if all(v == -math.inf for v in values):
                    results[i] = Completion(
                        error=f"none of the choices {prompts[i].choices} in the top {self.top} tokens"
                    )
                    continue
                best = max(values)
                weights = [math.exp(v - best) for v in values]
                results[i] = Completion(
                    choice_probs=[w / sum(weights) for w in weights], tokens=len(out.prompt_token_ids or [])
                )
        if generate:
            params = self._vllm.SamplingParams(
                max_tokens=self.spec.max_new_tokens, temperature=self.spec.temperature, seed=seed
            )
            texts = [self._text(prompts[i], "") for i, _ in generate]
            for (i, _), out in zip(generate, self.llm.generate(texts, params, use_tqdm=False)):
                generated = out.outputs[0]
                tokens = len(out.prompt_token_ids or []) + len(generated.token_ids or [])
                results[i] = Completion(text=generated.text, tokens=tokens)
        return [r if r is not None else Completion(error="no answer") for r in results]
