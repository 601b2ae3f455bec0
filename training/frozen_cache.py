"""Replay the output of the frozen bottom layers instead of recomputing it every epoch.

With LoRA on the top N layers only, the layers below are frozen: what they output for a training
row is the same in every epoch. On a CPU that forward pass is most of an epoch's cost (22 of
SmolLM2's 30 layers with ``lora_layers: 8``), and a judge needs several epochs over a few hundred
rows to learn its verdict. This module stores each row's output of the last frozen layer the first
time the row is seen in training, and replays it afterwards, so later epochs run only the adapted
layers. :meth:`FrozenLayerCache.fill` stores every row before training starts, without gradients
and without running the adapted layers, so the first epoch is a replay too.

The fill computes what rows share once. Judge rows start with the same judge prompt (a quarter of
a quickstart row) and often with the same victim prompt (a jailbreak template, one question
answered twice): rows are sorted by token ids, runs that share enough leading tokens get the
shared part computed once (batch of one), and their remaining tokens run on top of its key/value
cache, recursively for runs within runs. On the quickstart's 452 training rows that runs 65% of
the tokens, and with the frozen weights cast once for the fill (not in every pass) it takes 66 s
instead of 99.

It is exact up to rounding: causal attention makes a position's output depend only on the tokens
before it, so a shared prefix's output is the same for every row that starts with it, and a
padded row at its natural positions does not depend on the padding or on the other rows of its
batch. Outside training it replays the rows it holds and stores nothing: the trainer stores the
validation prompts too, so the verdict judge runs only the adapted layers. It steps aside
(computes normally) for packed batches, rows shifted from their natural positions, and models
whose decoder layers return tuples; it refuses a model with anything trainable below the adapted
layers.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from recipes.prefixes import shared_runs


__all__ = ["FrozenLayerCache", "frozen_bottom_layers", "shared_runs"]

logger = logging.getLogger(__name__)


class _Stored(Exception):
    """Ends a filling forward pass once the frozen layers' output is stored."""


class _Unsupported(Exception):
    """The fill cannot read this model's frozen layers' output."""


@dataclass
class _Prefix:
    """What the frozen layers computed for a shared prefix: per-layer keys and values, and the output."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]
    states: torch.Tensor  # (prefix length, hidden)


def _decoder_layers(model: Any) -> tuple[Any, torch.nn.ModuleList]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder()
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ValueError(f"{type(base).__name__}: expected a decoder with a `layers` list, found none")
    return decoder, layers


def frozen_bottom_layers(model: Any) -> int:
    """How many bottom decoder layers have nothing to train, with frozen input embeddings (else 0)."""
    decoder, layers = _decoder_layers(model)
    embeddings = decoder.get_input_embeddings()
    if embeddings is not None and any(p.requires_grad for p in embeddings.parameters()):
        return 0
    count = 0
    for layer in layers:
        if any(p.requires_grad for p in layer.parameters()):
            break
        count += 1
    return count


class FrozenLayerCache:
    """Stores and replays, per training row, the hidden states after the frozen bottom layers.

    Args:
        model: the (PEFT) model being trained.
        layers: how many bottom layers to cover; at most :func:`frozen_bottom_layers`.

    Attributes:
        hits, misses: training rows replayed / rows computed and stored, so far.
        eval_hits: rows replayed outside training (the verdict judge's validation prompts).
        fill_tokens, fill_tokens_computed: tokens of the rows :meth:`fill` stored / that it ran.
    """

    def __init__(self, model: Any, layers: int):
        decoder, all_layers = _decoder_layers(model)
        frozen = frozen_bottom_layers(model)
        if not 0 < layers <= frozen:
            raise ValueError(
                f"frozen layer cache: expected 1 to {frozen} layers (those with nothing to train), got {layers}"
            )
        self.layers = list(all_layers[:layers])
        self.hits = self.misses = self.eval_hits = 0
        self.fill_tokens = self.fill_tokens_computed = 0
        self._decoder = decoder
        self._rows: dict[bytes, torch.Tensor] = {}
        self._keys: list[tuple[bytes, int, int]] | None = None
        self._replaying = False
        self._filling = False
        self._direct: torch.Tensor | None = None  # the fill's own passes: the last frozen layer's output
        self._originals = [layer.forward for layer in self.layers]
        for index, layer in enumerate(self.layers):
            layer.forward = functools.partial(self._layer_forward, index)
        self._hook = decoder.register_forward_pre_hook(self._capture, with_kwargs=True)

    @property
    def stored_bytes(self) -> int:
        """Memory held by the stored rows."""
        return sum(t.numel() * t.element_size() for t in self._rows.values())

    def remove(self) -> None:
        """Put the layers' own forward back and forget the stored rows."""
        for layer, forward in zip(self.layers, self._originals):
            layer.forward = forward
        self._hook.remove()
        self._rows.clear()

    @staticmethod
    def _row_keys(input_ids: Any, mask: Any, positions: Any) -> list[tuple[bytes, int, int]] | None:
        """``(key, length, offset)`` per row of a padded batch whose rows sit at their natural positions.

        Right padding (offset 0) with default or natural position ids, or left padding (offset: the
        padding) with natural position ids for the real tokens: else None (packing, shifted rows).
        """
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            return None
        rows, width = input_ids.shape
        if mask is None:
            lengths, offsets = [width] * rows, [0] * rows
        else:
            if not isinstance(mask, torch.Tensor) or mask.shape != input_ids.shape:
                return None
            real = mask.bool().cpu()
            counts = real.sum(dim=1, keepdim=True)
            columns = torch.arange(width)[None, :]
            if torch.equal(real, columns < counts):
                offsets = [0] * rows
            elif positions is not None and torch.equal(real, columns >= width - counts):
                offsets = (width - counts).flatten().tolist()
            else:
                return None
            lengths = counts.flatten().tolist()
        if positions is not None:
            if not isinstance(positions, torch.Tensor) or positions.shape[-1] != width:
                return None
            positions = positions.cpu().expand(rows, width)
            for row, (n, offset) in enumerate(zip(lengths, offsets)):
                if not torch.equal(positions[row, offset : offset + n], torch.arange(n)):
                    return None
        ids = input_ids.cpu()
        return [
            (ids[row, offset : offset + n].numpy().tobytes(), int(n), int(offset))
            for row, (n, offset) in enumerate(zip(lengths, offsets))
        ]

    def _capture(self, module: Any, args: tuple, kwargs: dict) -> None:
        self._keys = None
        if self._filling or kwargs.get("inputs_embeds") is not None:
            return
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        keys = self._row_keys(input_ids, kwargs.get("attention_mask"), kwargs.get("position_ids"))
        # Outside training (the verdict judge), stored rows are replayed but nothing new is stored.
        if keys is not None and (module.training or all(key in self._rows for key, _, _ in keys)):
            self._keys = keys

    def _layer_forward(self, index: int, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        keys = self._keys
        if index == 0:
            self._replaying = keys is not None and all(key in self._rows for key, _, _ in keys)
            if self._replaying:
                if self._decoder.training:
                    self.hits += len(keys)
                else:
                    self.eval_hits += len(keys)
                return self._replay(keys, hidden_states)
        if self._replaying:
            return hidden_states
        out = self._originals[index](hidden_states, *args, **kwargs)
        if self._filling and keys is None and index == len(self.layers) - 1:
            if not isinstance(out, torch.Tensor):
                raise _Unsupported(f"the decoder layers return {type(out).__name__}, not a tensor")
            self._direct = out
            raise _Stored
        if index == len(self.layers) - 1 and keys is not None:
            if not isinstance(out, torch.Tensor):
                logger.warning("frozen layer cache: the decoder layers return %s, not a tensor; off", type(out))
                self._keys = None
                self.remove()
                return out
            self.misses += len(keys)
            for row, (key, length, offset) in enumerate(keys):
                self._rows[key] = out[row, offset : offset + length].detach().clone()
        return out

    def fill(
        self,
        model: Any,
        rows: Sequence[Sequence[int]],
        batch_size: int = 16,
        min_shared: int = 16,
        min_saved: int = 128,
        progress: bool = True,
    ) -> int:
        """Store the frozen layers' output for every row not stored yet; returns how many were.

        Args:
            model: the model being trained.
            rows: the token ids of each row (training rows, validation prompts).
            batch_size: rows per forward pass (rows of a run, sorted by length).
            min_shared: leading tokens rows must share to have them computed once (0: never).
            min_saved: token computations a shared part must save to get a pass of its own. Each
                pass costs about as much as a hundred tokens on a CPU; on the quickstart's 452 training
                rows 128 filled in 66 s, where every shared part (0) took 75 s and no sharing 91 s.
            progress: show a progress bar.
        """
        from tqdm.auto import tqdm

        ids: list[list[int]] = []
        keys: set[bytes] = set()
        for row in rows:
            row_ids = [int(t) for t in row]
            key = self._key(row_ids)
            if row_ids and key not in self._rows and key not in keys:
                keys.add(key)
                ids.append(row_ids)
        if not ids:
            return 0
        before, training = self.misses, model.training
        # No dropout: the stored output is what the frozen layers compute, not one noisy sample of it.
        model.eval()
        self._filling = True
        try:
            bar = tqdm(total=len(ids), desc="frozen layer cache", unit="row", disable=not progress)
            with torch.no_grad(), self._weights_cast_once(), bar:
                share = min_shared if min_shared > 0 else 1 << 30
                self._fill_rows(ids, list(range(len(ids))), 0, None, batch_size, (share, min_saved), bar)
        except _Unsupported as error:
            logger.warning("frozen layer cache: %s; not filled", error)
        finally:
            self._filling = False
            model.train(training)
        return self.misses - before

    @contextlib.contextmanager
    def _weights_cast_once(self) -> Iterator[None]:
        """Under autocast, cast the frozen layers' linear weights once for the fill, not in every pass.

        Autocast keeps its casts only of weights that require grad; the frozen ones were cast again
        in each of the fill's hundreds of small passes (12% of its time). The result is the same:
        autocast would round them to the same dtype.
        """
        device = self._decoder.get_input_embeddings().weight.device.type
        if not torch.is_autocast_enabled(device):
            yield
            return
        dtype = torch.get_autocast_dtype(device)
        saved = []
        for layer in self.layers:
            for module in layer.modules():
                if isinstance(module, torch.nn.Linear):
                    for name in ("weight", "bias"):
                        param = getattr(module, name)
                        if param is not None and param.is_floating_point() and param.dtype != dtype:
                            saved.append((param, param.data))
                            param.data = param.data.to(dtype)
        try:
            yield
        finally:
            for param, data in saved:
                param.data = data

    @staticmethod
    def _key(ids: Sequence[int]) -> bytes:
        return torch.tensor(ids, dtype=torch.long).numpy().tobytes()

    def _fill_rows(
        self,
        ids: list[list[int]],
        indices: list[int],
        start: int,
        prefix: _Prefix | None,
        batch_size: int,
        sharing: tuple[int, int],
        bar: Any,
    ) -> None:
        """Store rows that share ``ids[:start]``, whose frozen-layer output and cache are ``prefix``."""
        alone: list[int] = []
        for run, shared in shared_runs(ids, indices, start, *sharing):
            if shared == start:
                alone.extend(run)
                continue
            states, cache = self._frozen_pass([ids[run[0]][start:shared]], start, prefix)
            layers = len(self.layers)
            shared_prefix = _Prefix(
                kv=[(layer.keys, layer.values) for layer in cache.layers[:layers]],
                states=states[0] if prefix is None else torch.cat([prefix.states, states[0]]),
            )
            self._fill_rows(ids, run, shared, shared_prefix, batch_size, sharing, bar)
        alone.sort(key=lambda i: len(ids[i]))
        for b in range(0, len(alone), batch_size):
            batch = alone[b : b + batch_size]
            states, _ = self._frozen_pass([ids[i][start:] for i in batch], start, prefix)
            for row, i in enumerate(batch):
                own = states[row, : len(ids[i]) - start]
                stored = own if prefix is None else torch.cat([prefix.states, own])
                self._rows[self._key(ids[i])] = stored.detach().clone()
            self.misses += len(batch)
            self.fill_tokens += sum(len(ids[i]) for i in batch)
            bar.update(len(batch))

    def _frozen_pass(
        self, seqs: list[list[int]], start: int, prefix: _Prefix | None
    ) -> tuple[torch.Tensor, DynamicCache]:
        """Run right-padded ``seqs`` (positions from ``start``, after ``prefix``) up to the last frozen layer."""
        device = self._decoder.get_input_embeddings().weight.device
        rows, width = len(seqs), max(len(seq) for seq in seqs)
        input_ids = torch.zeros((rows, width), dtype=torch.long)
        mask = torch.zeros((rows, start + width), dtype=torch.long)
        mask[:, :start] = 1
        for row, seq in enumerate(seqs):
            input_ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, start : start + len(seq)] = 1
        config = self._decoder.config
        if prefix is None:
            cache = DynamicCache(config=config)
        else:
            expanded = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in prefix.kv]
            cache = DynamicCache(expanded, config=config)
        positions = torch.arange(start, start + width, device=device).expand(rows, -1)
        self._direct = None
        with contextlib.suppress(_Stored):
            self._decoder(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions,
                cache=cache,
                use_cache=True,
            )
        states, self._direct = self._direct, None
        if states is None:
            raise _Unsupported("the forward pass did not reach the last frozen layer")
        self.fill_tokens_computed += sum(len(seq) for seq in seqs)
        return states, cache

    def _replay(self, keys: list[tuple[bytes, int, int]], embeddings: torch.Tensor) -> torch.Tensor:
        first = self._rows[keys[0][0]]
        out = embeddings.new_zeros((len(keys), embeddings.shape[1], first.shape[-1]), dtype=first.dtype)
        for row, (key, length, offset) in enumerate(keys):
            out[row, offset : offset + length] = self._rows[key]
        # Reentrant activation checkpointing of the layers above needs an input that asks for grads.
        return out.requires_grad_(embeddings.requires_grad)
