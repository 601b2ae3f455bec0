"""Batched causal-LM inference that computes as few tokens as it can.

Its savings, each checked against a plain forward pass in the tests:

- **Shared prefix, computed once.** Every judge prompt of a category starts with the same system
  part (instructions, criteria, exemplars). Its key/value cache is computed once per distinct
  prefix, kept in a small LRU, expanded to each batch, and only the suffix tokens are run. The
  split is found on token ids (longest common prefix of the item's ids and the prefix's ids), so
  a BPE merge across the boundary can never change what the model sees.
- **No decoding where a verdict can be read.** :meth:`CausalEngine.next_token_logprobs` gives the
  next-token log-probabilities of a few candidate ids after one forward pass.
- **Prefixes shared by some items, computed once too.** Within a call, items whose token ids
  share a further common prefix beyond the category's (the same jailbreak template before the
  question, the same victim prompt answered by several models) are grouped, the group's prefix
  is computed once on top of the category's cache, and later calls reuse any cached prefix their
  items start with (LRU, ``max_prefixes`` entries).
- **Decoding in full batches.** A decoding step costs about as much for one row as for thirty,
  so generation does not decode each prefix group on its own: the groups' first passes are
  merged into one batch (each row's cache left-padded to the longest) and decoded together.
- **Batches sorted by length.** Items are grouped by prefix, sorted by suffix length and padded on
  the left *between* the prefix and the suffix; explicit position ids and an attention mask that
  spans prefix + suffix keep each row identical to its own unpadded forward pass, and every row
  ends at the last column, so the next-token logits and incremental decoding need no gathering.
  A batch holds at most ``batch_size`` rows and ``max_batch_tokens`` cached positions (rows x
  (prefix + longest suffix + tokens to generate)): the prefix cache is copied into every row, so
  a long few-shot prefix at a large batch size would otherwise decide the peak memory.

Token accounting: each item is charged its suffix tokens plus the tokens it generated; a prefix
is charged once, to the first item whose batch computed it. Padding is never counted.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from recipes.prefixes import common_prefix, shared_runs


__all__ = ["CausalEngine", "EngineOutput"]

logger = logging.getLogger(__name__)

# A shared prefix shorter than this is not worth a cache entry.
_MIN_PREFIX = 4
# Items must share at least this many more tokens to get a prefix of their own.
_MIN_SHARED = 32


@dataclass
class EngineOutput:
    """One item's result: log-probs of the candidate ids, or generated text; tokens computed."""

    logprobs: list[float] | None = None
    text: str = ""
    tokens: int = 0
    error: str = ""
    token_ids: list[int] = field(default_factory=list)


@dataclass
class _Item:
    index: int
    ids: list[int]
    key: tuple[int, ...] | None
    split: int
    parent: tuple[int, ...] | None = None
    parent_split: int = 0

    @property
    def suffix(self) -> list[int]:
        return self.ids[self.split :]


@dataclass
class _Prefilled:
    """A batch after its first pass, waiting to decode: last logits, cache, mask, next positions."""

    items: list[_Item]
    logits: torch.Tensor
    cache: Any
    mask: torch.Tensor
    positions: torch.Tensor
    cost: int


class CausalEngine:
    """Runs a causal LM over many prompts with prefix reuse and length-sorted batches.

    Args:
        model: a transformers causal LM (eval mode is set here).
        tokenizer: its tokenizer; texts are tokenized without adding special tokens (chat
            templates already hold them).
        batch_size: rows per forward pass.
        max_batch_tokens: cached positions per batch (rows x full length), which bounds memory.
        prefix_cache: reuse shared-prefix key/value caches (off: every token is computed).
        max_prefixes: how many distinct prefix caches to keep (LRU).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        batch_size: int = 8,
        max_batch_tokens: int = 16384,
        prefix_cache: bool = True,
        max_prefixes: int = 16,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = max(1, int(batch_size))
        self.max_batch_tokens = max(1, int(max_batch_tokens))
        self.prefix_cache = prefix_cache
        self.max_prefixes = max_prefixes
        self.device = next(model.parameters()).device
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else 0)
        self.max_positions = getattr(model.config, "max_position_embeddings", None)
        self._prefix_ids: dict[str, list[int]] = {}
        self._kv: OrderedDict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self.prefix_tokens_computed = 0

    # -- tokenization and planning ---------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` exactly as written (no special tokens added)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _plan(self, texts: Sequence[str], prefixes: Sequence[str | None] | None) -> list[_Item]:
        """Tokenize and give each item its cached prefix, or a longer one it shares with other items."""
        items = []
        for i, text in enumerate(texts):
            ids = self.encode(text)
            key, split = None, 0
            prefix = prefixes[i] if prefixes is not None else None
            if self.prefix_cache and prefix:
                if prefix not in self._prefix_ids:
                    self._prefix_ids[prefix] = self.encode(prefix)
                prefix_ids = self._prefix_ids[prefix]
                # Keep at least one suffix token: its logits are what is read.
                split = min(common_prefix(ids, prefix_ids), len(ids) - 1)
                if split >= _MIN_PREFIX:
                    key = tuple(prefix_ids)
                else:
                    split = 0
            items.append(_Item(i, ids, key, split))
        if self.prefix_cache:
            self._reuse_cached(items)
            self._share(items)
        return items

    def _reuse_cached(self, items: list[_Item]) -> None:
        """Point items at the longest cached prefix they start with (from an earlier call)."""
        longest_first = sorted(self._kv, key=len, reverse=True)
        for item in items:
            for key in longest_first:
                if item.split < len(key) < len(item.ids) and tuple(item.ids[: len(key)]) == key:
                    item.key, item.split, item.parent, item.parent_split = key, len(key), None, 0
                    break

    def _share(self, items: list[_Item]) -> None:
        """Give items that share a longer prefix than their current one a common prefix of their own."""
        groups: dict[tuple, list[_Item]] = {}
        for item in items:
            groups.setdefault((item.key, item.split), []).append(item)
        for (key, split), group in groups.items():
            if len(group) < 2:
                continue
            for run, shared in shared_runs([it.ids for it in group], range(len(group)), split, _MIN_SHARED):
                if shared == split:
                    continue
                prefix = tuple(group[run[0]].ids[:shared])
                for i in run:
                    group[i].parent, group[i].parent_split = key, split
                    group[i].key, group[i].split = prefix, shared

    def _batches(self, items: list[_Item], extra: int = 0) -> list[list[_Item]]:
        """Length-sorted batches per prefix, cut at ``batch_size`` rows or ``max_batch_tokens`` positions."""
        groups: dict[tuple, list[_Item]] = {}
        for item in items:
            groups.setdefault((item.key, item.split), []).append(item)
        batches: list[list[_Item]] = []
        for group in groups.values():
            group.sort(key=lambda it: len(it.suffix), reverse=True)
            batch: list[_Item] = []
            for item in group:
                # The first row of a batch is its longest: every row is padded to its length.
                length = batch[0].split + len(batch[0].suffix) + extra if batch else 0
                if batch and (len(batch) >= self.batch_size or (len(batch) + 1) * length > self.max_batch_tokens):
                    batches.append(batch)
                    batch = []
                batch.append(item)
            batches.append(batch)
        return batches

    # -- model calls -----------------------------------------------------------------------------

    def _prefix_kv(
        self, key: tuple[int, ...], parent: tuple[int, ...] | None = None, parent_split: int = 0
    ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int]:
        """The cache of ``key``: stored, or computed (on top of ``parent[:parent_split]`` if given)."""
        if key in self._kv:
            self._kv.move_to_end(key)
            return self._kv[key], 0
        cache, cost, start = None, 0, 0
        if parent is not None and parent_split > 0:
            parent_kv, cost = self._prefix_kv(parent)
            cache = DynamicCache(
                [(k[:, :, :parent_split], v[:, :, :parent_split]) for k, v in parent_kv], config=self.model.config
            )
            start = parent_split
        ids = torch.tensor([list(key[start:])], device=self.device)
        positions = torch.arange(start, len(key), device=self.device)[None]
        out = self.model(input_ids=ids, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1)
        kv = [(layer.keys, layer.values) for layer in out.cache.layers]
        self._kv[key] = kv
        while len(self._kv) > self.max_prefixes:
            self._kv.popitem(last=False)
        self.prefix_tokens_computed += len(key) - start
        return kv, cost + len(key) - start

    def _first_pass(self, batch: list[_Item]) -> tuple[torch.Tensor, Any, torch.Tensor, torch.Tensor, int]:
        """Run prefix (cached) + suffixes; return last-column logits, cache, mask, next positions, prefix cost."""
        split = batch[0].split
        cache, cost = None, 0
        if batch[0].key is not None:
            kv, cost = self._prefix_kv(batch[0].key, batch[0].parent, batch[0].parent_split)
            rows = len(batch)
            cache = DynamicCache(
                [(k[:, :, :split].expand(rows, -1, -1, -1), v[:, :, :split].expand(rows, -1, -1, -1)) for k, v in kv],
                config=self.model.config,
            )
        width = max(len(item.suffix) for item in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), split + width), dtype=torch.long)
        mask[:, :split] = 1
        positions = torch.zeros((len(batch), width), dtype=torch.long)
        for row, item in enumerate(batch):
            suffix = item.suffix
            start = width - len(suffix)
            input_ids[row, start:] = torch.tensor(suffix)
            mask[row, split + start :] = 1
            positions[row, start:] = torch.arange(split, split + len(suffix))
            positions[row, :start] = split
        input_ids, mask, positions = input_ids.to(self.device), mask.to(self.device), positions.to(self.device)
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :].float(), out.cache, mask, positions[:, -1] + 1, cost

    def _check_lengths(self, items: list[_Item], extra: int, outputs: list[EngineOutput]) -> list[_Item]:
        if not self.max_positions:
            return items
        kept = []
        for item in items:
            if len(item.ids) + extra > self.max_positions:
                outputs[item.index].error = (
                    f"input of {len(item.ids)} tokens (+{extra} to generate) exceeds the model's "
                    f"{self.max_positions} positions; lower the field budget"
                )
            else:
                kept.append(item)
        return kept

    # -- public API ------------------------------------------------------------------------------

    @torch.inference_mode()
    def next_token_logprobs(
        self,
        texts: Sequence[str],
        candidate_ids: Sequence[Sequence[int]] | Sequence[int],
        *,
        prefixes: Sequence[str | None] | None = None,
    ) -> list[EngineOutput]:
        """Log-softmax of the next token after each text, at the candidate ids, in one forward pass.

        Args:
            texts: full model inputs (chat template applied, answer prefix appended).
            candidate_ids: one list of token ids for all texts, or one list per text.
            prefixes: per text, the text of its shared prefix (e.g. the system part), or None.
        """
        per_text = bool(candidate_ids) and isinstance(candidate_ids[0], list | tuple)
        outputs = [EngineOutput() for _ in texts]
        items = self._check_lengths(self._plan(texts, prefixes), 0, outputs)
        for batch in self._batches(items):
            try:
                logits, _, _, _, cost = self._first_pass(batch)
            except (RuntimeError, ValueError, IndexError) as error:  # one bad batch must not end the run
                self._fail(batch, outputs, "forward pass", error)
                continue
            logprobs = torch.log_softmax(logits, dim=-1)
            for row, item in enumerate(batch):
                ids = candidate_ids[item.index] if per_text else candidate_ids
                out = outputs[item.index]
                out.logprobs = [float(logprobs[row, i]) for i in ids]
                out.tokens = len(item.suffix) + (cost if row == 0 else 0)
        return outputs

    @torch.inference_mode()
    def generate(
        self,
        texts: Sequence[str],
        *,
        prefixes: Sequence[str | None] | None = None,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        seed: int = 0,
        stop_ids: Sequence[int] = (),
    ) -> list[EngineOutput]:
        """Decode each text greedily (temperature 0) or by seeded sampling, until a stop id.

        Sampling draws from one ``torch.Generator`` seeded with ``seed`` over batches in a fixed
        (length-sorted) order, so the same inputs and seed give the same outputs.
        """
        outputs = [EngineOutput() for _ in texts]
        stops = torch.tensor(sorted(set(stop_ids)) or [-1], device=self.device)
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        items = self._check_lengths(self._plan(texts, prefixes), max_new_tokens, outputs)
        parts: list[_Prefilled] = []

        def decode() -> None:
            batch = [item for part in parts for item in part.items]
            try:
                self._decode(parts, outputs, max_new_tokens, temperature, generator, stops)
            except (RuntimeError, ValueError, IndexError) as error:
                self._fail(batch, outputs, "generation", error)
            parts.clear()

        for batch in self._batches(items, extra=max_new_tokens):
            try:
                part = _Prefilled(batch, *self._first_pass(batch))
            except (RuntimeError, ValueError, IndexError) as error:
                self._fail(batch, outputs, "generation", error)
                continue
            if parts and not self._mergeable([*parts, part], max_new_tokens):
                decode()
            parts.append(part)
        if parts:
            decode()
        return outputs

    @staticmethod
    def _fail(batch: list[_Item], outputs: list[EngineOutput], what: str, error: Exception) -> None:
        logger.warning("%s failed for %d items: %s", what, len(batch), error)
        for item in batch:
            outputs[item.index].error = f"{what} failed: {type(error).__name__}: {error}"

    def _mergeable(self, parts: list[_Prefilled], max_new_tokens: int) -> bool:
        """Whether prefilled batches fit one decoding batch (rows, cached positions, plain cache layers)."""
        rows = sum(len(part.items) for part in parts)
        width = max(part.mask.shape[1] for part in parts)
        plain = all(layer.keys.shape[2] == part.mask.shape[1] for part in parts for layer in part.cache.layers)
        return plain and rows <= self.batch_size and rows * (width + max_new_tokens) <= self.max_batch_tokens

    def _decode(self, parts, outputs, max_new_tokens, temperature, generator, stops) -> None:
        """Decode prefilled batches as one: each row's cache is left-padded to the longest."""
        batch = [item for part in parts for item in part.items]
        fed = [len(item.suffix) + (part.cost if r == 0 else 0) for part in parts for r, item in enumerate(part.items)]
        if len(parts) == 1:
            part = parts[0]
            logits, cache, mask, positions = part.logits, part.cache, part.mask, part.positions
        else:
            width = max(part.mask.shape[1] for part in parts)

            def left_pad(t: torch.Tensor, dim: int) -> torch.Tensor:
                pad = [0, 0] * (t.dim() - 1 - dim) + [width - t.shape[dim], 0]
                return torch.nn.functional.pad(t, pad)

            layers = len(parts[0].cache.layers)
            kv = [
                tuple(
                    torch.cat([left_pad(getattr(part.cache.layers[i], name), 2) for part in parts])
                    for name in ("keys", "values")
                )
                for i in range(layers)
            ]
            cache = DynamicCache(kv, config=self.model.config)
            mask = torch.cat([left_pad(part.mask, 1) for part in parts])
            logits = torch.cat([part.logits for part in parts])
            positions = torch.cat([part.positions for part in parts])
            # The merged copy replaces the parts' caches: two copies only while merging, as in a step.
            for part in parts:
                part.cache = None
        rows = len(batch)
        done = torch.zeros(rows, dtype=torch.bool, device=self.device)
        generated: list[list[int]] = [[] for _ in batch]
        for step in range(max_new_tokens):
            if temperature > 0:
                probs = torch.softmax(logits / temperature, dim=-1)
                next_ids = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            else:
                next_ids = logits.argmax(dim=-1)
            next_ids = torch.where(done, torch.full_like(next_ids, self.pad_id), next_ids)
            for r in range(rows):
                if not done[r]:
                    generated[r].append(int(next_ids[r]))
            done = done | torch.isin(next_ids, stops)
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            for r in range(rows):
                if not done[r]:
                    fed[r] += 1
            mask = torch.cat([mask, torch.ones((rows, 1), dtype=mask.dtype, device=self.device)], dim=1)
            out = self.model(
                input_ids=next_ids[:, None],
                attention_mask=mask,
                position_ids=positions[:, None],
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            cache, logits, positions = out.cache, out.logits[:, -1, :].float(), positions + 1
        stop_set = set(stops.tolist())
        for r, item in enumerate(batch):
            ids = [t for t in generated[r] if t not in stop_set]
            out = outputs[item.index]
            out.token_ids = generated[r]
            out.text = self.tokenizer.decode(ids, skip_special_tokens=True)
            out.tokens = fed[r]
