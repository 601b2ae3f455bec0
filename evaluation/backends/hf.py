"""The local ``transformers`` judge: base models, LoRA adapters, merged models and tuned judges.

A verdict-first template (``basic``, ``criteria``, ``few_shot``, ``score``) is read from the logits
of the first token of each answer choice after the fixed answer prefix (``{"verdict": "``), in one
forward pass, which also gives P(positive). ``cot`` (or ``options.read: generate``) generates and
parses with ``recipes.verdict``. Either way the system part of the prompt, which every example of
a category shares, is computed once and its cache reused (see :mod:`evaluation.backends.hf_engine`).

Spec options: ``read`` (``auto`` | ``logits`` | ``generate``), ``dtype`` (``auto`` default:
bfloat16 where the device computes it natively, a recent GPU or a CPU with AVX-512 BF16 / AMX, else
float32; ``float32``, ``bfloat16``, or ``float16`` on CUDA only), ``device`` (``auto``), ``prefix_cache`` (True),
``max_batch_tokens`` (16384: rows x positions per batch, the bound on cache memory), ``float32_head``
(True: a 16-bit model projects onto the vocabulary in float32, so P(positive) is not coarsely rounded),
``force_prefix`` (True: generation also starts after the answer prefix), ``seed``, ``budget``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from evaluation.backends.base import Completion, PromptJudge
from evaluation.backends.hf_engine import CausalEngine
from evaluation.judges import JudgeSpec
from recipes.choices import ChoiceError, choice_token_ids
from recipes.judge_card import JUDGE_CARD, JudgeCard
from recipes.models import fast_bf16, resolve_model
from recipes.prompts import RenderedPrompt


__all__ = ["HFJudge", "LoadedModel", "load_causal_lm", "render_judge_input", "stop_token_ids"]

logger = logging.getLogger(__name__)

_SENTINEL = "@@judgeforge-user-turn@@"
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


@lru_cache(maxsize=2)
def load_causal_lm(name: str, dtype: str = "auto", device: str = "auto", float32_head: bool = True) -> LoadedModel:
    """Load a judge model by alias, hub id, folder, LoRA adapter folder or tuned-judge folder.

    Cached (two models), so five prompts on one model load it once. ``float32_head``: project onto
    the vocabulary in float32 when the model computes in a 16-bit type (see :func:`_float32_head`).

    Raises:
        ValueError: when a folder is neither a model, an adapter nor a tuned judge.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = _resolve_device(device)
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
        model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch_dtype)
        # Merged for inference: the same outputs as the adapter, without its per-layer overhead.
        model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
        tokenizer = AutoTokenizer.from_pretrained(str(folder) if _has_tokenizer(folder) else base_path)
    else:
        path = resolve_model(name)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    if float32_head:
        _float32_head(model)
    return LoadedModel(model=model, tokenizer=tokenizer, card=card, source=name)


def load_spec_model(spec: JudgeSpec) -> LoadedModel:
    """The model a judge spec names, loaded with its ``dtype``, ``device`` and ``float32_head`` options."""
    options = spec.options
    return load_causal_lm(
        spec.model,
        str(options.get("dtype", "auto")),
        str(options.get("device", "auto")),
        bool(options.get("float32_head", True)),
    )


def spec_engine(loaded: LoadedModel, spec: JudgeSpec) -> CausalEngine:
    """The inference engine of a judge spec: ``batch_size`` and the ``prefix_cache`` / ``max_batch_tokens`` options."""
    return CausalEngine(
        loaded.model,
        loaded.tokenizer,
        batch_size=spec.batch_size,
        prefix_cache=bool(spec.options.get("prefix_cache", True)),
        max_batch_tokens=int(spec.options.get("max_batch_tokens", 16384)),
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


def render_judge_input(tokenizer: Any, messages: list[dict[str, str]], answer_prefix: str = "") -> str:
    """The model input for judge messages, ending with ``answer_prefix``.

    Uses the model's chat template (folding the system turn into the user turn when the template
    has no system role), or plain text for a model without a chat template.
    """
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


class HFJudge(PromptJudge):
    """A judge run locally with transformers (see the module docstring for its options)."""

    def __init__(self, spec: JudgeSpec, *, loaded: LoadedModel | None = None):
        options = spec.options
        loaded = loaded or load_spec_model(spec)
        card = loaded.card
        super().__init__(
            spec,
            template=card.prompt_template if card else None,
            verdict_words=card.verdict_words if card else None,
            budget=card.field_budget() if card and "budget" not in options else None,
            threshold=card.threshold if card else None,
            thresholds=card.thresholds if card else None,
        )
        self.model, self.tokenizer, self.card = loaded.model, loaded.tokenizer, card
        self.read = str(options.get("read", "auto"))
        if self.read not in ("auto", "logits", "generate"):
            raise ValueError(
                f"<judge spec>: field 'options.read': expected auto, logits or generate, got {self.read!r}"
            )
        self.force_prefix = bool(options.get("force_prefix", True))
        self.engine = spec_engine(loaded, spec)
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
            text = render_judge_input(self.tokenizer, probe)
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
        texts = [
            render_judge_input(self.tokenizer, prompts[i].messages, prompts[i].template.answer_prefix) for i in indices
        ]
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
        texts = [render_judge_input(self.tokenizer, prompts[i].messages, s) for i, s in zip(indices, starts)]
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
