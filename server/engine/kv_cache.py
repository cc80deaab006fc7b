"""A KV cache that appends in place instead of copying itself on every token.

Transformers' `DynamicCache` appends each step's keys and values with `torch.cat`, which
copies the whole cache: per token, every layer's keys and values for every row. For T3 on the
CPU that copy grew to most of a batched decode step (4 streams of ~300 positions: ~230 MB
copied and freshly allocated per token). Here each layer keeps a buffer with spare room and
writes new positions into it; the model sees views of the filled part. Growth is geometric,
so the copying left is amortised to a constant per token.

The arithmetic is unchanged: attention reads the same values, from a strided view.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer

# Room added beyond what is needed when a buffer has to grow: at least this many positions,
# or half the current length, whichever is more.
MIN_SPARE_POSITIONS = 64


class GrowingLayer(DynamicLayer):
    """One layer's keys and values, (rows, heads, positions, head_dim), with spare room.

    Assigning `keys` / `values` (as the batch does when rows join, leave or are padded)
    adopts the new tensors; the next append moves them into a buffer with room to spare.
    """

    def __init__(self) -> None:
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None
        # Filled positions of each buffer: equal, except between the two assignments that
        # replace keys and values (each getter must keep returning its own tensor whole).
        self._key_length = 0
        self._value_length = 0
        super().__init__()  # type: ignore[no-untyped-call]

    @property
    def keys(self) -> torch.Tensor | None:
        buffer = self._key_buffer
        return None if buffer is None else buffer[:, :, : self._key_length]

    @keys.setter
    def keys(self, tensor: torch.Tensor | None) -> None:
        self._key_buffer, self._key_length = tensor, _positions(tensor)

    @property
    def values(self) -> torch.Tensor | None:
        buffer = self._value_buffer
        return None if buffer is None else buffer[:, :, : self._value_length]

    @values.setter
    def values(self, tensor: torch.Tensor | None) -> None:
        self._value_buffer, self._value_length = tensor, _positions(tensor)

    @property
    def _length(self) -> int:
        if self._key_length != self._value_length:
            raise RuntimeError("keys and values of a cache layer differ in length")
        return self._key_length

    def update(
        self,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        cache_kwargs: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.dtype, self.device = key_states.dtype, key_states.device
            self.is_initialized = True
        length = self._length
        new_length = length + key_states.shape[2]
        if (
            self._key_buffer is None
            or self._value_buffer is None
            or new_length > min(self._key_buffer.shape[2], self._value_buffer.shape[2])
        ):
            self._allocate(key_states, value_states, new_length)
        assert self._key_buffer is not None and self._value_buffer is not None
        self._key_buffer[:, :, length:new_length] = key_states
        self._value_buffer[:, :, length:new_length] = value_states
        self._key_length = self._value_length = new_length
        keys, values = self.keys, self.values
        assert keys is not None and values is not None
        return keys, values

    def _allocate(self, key_states: torch.Tensor, value_states: torch.Tensor, needed: int) -> None:
        capacity = needed + max(MIN_SPARE_POSITIONS, needed // 2)
        rows, heads, _, key_dim = key_states.shape
        keys = key_states.new_empty(rows, heads, capacity, key_dim)
        values = value_states.new_empty(rows, heads, capacity, value_states.shape[3])
        length = self._length
        if length:
            assert self._key_buffer is not None and self._value_buffer is not None
            keys[:, :, :length] = self._key_buffer[:, :, :length]
            values[:, :, :length] = self._value_buffer[:, :, :length]
        self._key_buffer, self._value_buffer = keys, values

    def get_seq_length(self) -> int:
        return self._length if self.is_initialized else 0

    def spare_positions(self) -> int:
        """Room left before the next reallocation (for tests and diagnostics)."""
        return 0 if self._key_buffer is None else self._key_buffer.shape[2] - self._length


def _positions(tensor: torch.Tensor | None) -> int:
    # DynamicLayer's lazy initialisation assigns an empty 1-D tensor: no positions yet.
    return 0 if tensor is None or tensor.dim() < 4 else tensor.shape[2]


class GrowingCache(Cache):
    """A cache of `GrowingLayer`s, created one per layer as the model first writes it."""

    def __init__(self) -> None:
        super().__init__(layer_class_to_replicate=GrowingLayer)

    @classmethod
    def holding(cls, states: list[tuple[torch.Tensor, torch.Tensor]]) -> GrowingCache:
        """A cache that starts with these (keys, values) per layer. They are adopted, never
        written to: the first append moves them into a larger buffer."""
        cache = cls()
        for keys, values in states:
            layer = GrowingLayer()
            layer.dtype, layer.device, layer.is_initialized = keys.dtype, keys.device, True
            layer.keys, layer.values = keys, values
            cache.layers.append(layer)
        return cache
