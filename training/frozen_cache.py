"""Replay the output of the frozen bottom layers instead of recomputing it every epoch.

With LoRA on the top N layers only, the layers below are frozen: what they output for a training
row is the same in every epoch. On a CPU that forward pass is most of an epoch's cost (22 of
SmolLM2's 30 layers with ``lora_layers: 8``), and a judge needs several epochs over a few hundred
rows to learn its verdict. This module stores each row's output of the last frozen layer the first
time the row is seen in training, and replays it afterwards, so later epochs run only the adapted
layers. :meth:`FrozenLayerCache.fill` stores every row before training starts, in length-sorted
batches without gradients (no padding to speak of, and the adapted layers are not run), so the
first epoch is a replay too.

It is exact: a right-padded row's positions do not depend on the padding or on the other rows of
its batch, so the stored rows are what the frozen layers would compute again. It steps aside
(computes normally) outside training mode, for left-padded or packed batches, for batches with
explicit position ids, and for models whose decoder layers return tuples; it refuses a model
with anything trainable below the adapted layers.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch


__all__ = ["FrozenLayerCache", "frozen_bottom_layers"]

logger = logging.getLogger(__name__)


class _Stored(Exception):
    """Ends a filling forward pass once the frozen layers' output is stored."""


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
        hits, misses: training rows replayed / computed so far.
    """

    def __init__(self, model: Any, layers: int):
        decoder, all_layers = _decoder_layers(model)
        frozen = frozen_bottom_layers(model)
        if not 0 < layers <= frozen:
            raise ValueError(
                f"frozen layer cache: expected 1 to {frozen} layers (those with nothing to train), got {layers}"
            )
        self.layers = list(all_layers[:layers])
        self.hits = self.misses = 0
        self._rows: dict[bytes, torch.Tensor] = {}
        self._keys: list[tuple[bytes, int]] | None = None
        self._replaying = False
        self._filling = False
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
    def _row_keys(input_ids: Any, mask: Any) -> list[tuple[bytes, int]] | None:
        """``(key, length)`` per row of a right-padded batch, or None when the batch is not one."""
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            return None
        width = input_ids.shape[1]
        if mask is None:
            lengths = [width] * input_ids.shape[0]
        else:
            if not isinstance(mask, torch.Tensor) or mask.shape != input_ids.shape:
                return None
            counts = mask.sum(dim=1, keepdim=True)
            if not torch.equal(mask.bool(), torch.arange(width, device=mask.device)[None, :] < counts):
                return None  # left padding or packing
            lengths = counts.flatten().tolist()
        ids = input_ids.cpu()
        return [(ids[row, :n].numpy().tobytes(), int(n)) for row, n in enumerate(lengths)]

    def _capture(self, module: Any, args: tuple, kwargs: dict) -> None:
        self._keys = None
        if not module.training or kwargs.get("position_ids") is not None or kwargs.get("inputs_embeds") is not None:
            return
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        self._keys = self._row_keys(input_ids, kwargs.get("attention_mask"))

    def _layer_forward(self, index: int, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        keys = self._keys
        if index == 0:
            self._replaying = keys is not None and all(key in self._rows for key, _ in keys)
            if self._replaying:
                if self._filling:
                    raise _Stored
                self.hits += len(keys)
                return self._replay(keys, hidden_states)
        if self._replaying:
            return hidden_states
        out = self._originals[index](hidden_states, *args, **kwargs)
        if index == len(self.layers) - 1 and keys is not None:
            if not isinstance(out, torch.Tensor):
                logger.warning("frozen layer cache: the decoder layers return %s, not a tensor; off", type(out))
                self._keys = None
                self.remove()
                return out
            self.misses += len(keys)
            for row, (key, length) in enumerate(keys):
                self._rows[key] = out[row, :length].detach().clone()
            if self._filling:
                raise _Stored
        return out

    def fill(
        self,
        model: Any,
        rows: Sequence[Mapping[str, Any]],
        collate: Callable,
        batch_size: int = 16,
        progress: bool = True,
    ) -> int:
        """Store the frozen layers' output for every row not stored yet; returns how many were.

        Args:
            model: the model being trained (put in training mode, the mode in which rows are stored).
            rows: tokenized training rows (``input_ids``).
            collate: the trainer's collator (right padding), followed by moving tensors to the device.
            batch_size: rows per forward pass; rows are sorted by length first.
            progress: show a progress bar.
        """
        from tqdm.auto import tqdm

        order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
        before, training = self.misses, model.training
        model.train()
        self._filling = True
        try:
            with torch.no_grad():
                starts = range(0, len(order), batch_size)
                for start in tqdm(starts, desc="frozen layer cache", unit="batch", disable=not progress):
                    batch = collate([rows[i] for i in order[start : start + batch_size]])
                    inputs = {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
                    try:
                        model(**inputs)
                    except _Stored:
                        continue
                    logger.warning("frozen layer cache: these batches cannot be stored (not right-padded); not filled")
                    break
        finally:
            self._filling = False
            model.train(training)
        return self.misses - before

    def _replay(self, keys: list[tuple[bytes, int]], embeddings: torch.Tensor) -> torch.Tensor:
        first = self._rows[keys[0][0]]
        out = embeddings.new_zeros((len(keys), embeddings.shape[1], first.shape[-1]), dtype=first.dtype)
        for row, (key, length) in enumerate(keys):
            out[row, :length] = self._rows[key]
        # Reentrant activation checkpointing of the layers above needs an input that asks for grads.
        return out.requires_grad_(embeddings.requires_grad)
