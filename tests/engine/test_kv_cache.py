"""The in-place KV cache gives the model exactly what transformers' DynamicCache gives it."""

from __future__ import annotations

from typing import Any

import torch
from transformers import GPT2Config, GPT2Model
from transformers.cache_utils import DynamicCache

from server.engine.kv_cache import GrowingCache, GrowingLayer


def tiny_gpt2() -> Any:
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=512, vocab_size=50)  # type: ignore[no-untyped-call]
    return GPT2Model(config).eval()  # type: ignore[no-untyped-call]


def decode(model: Any, cache: object, steps: int) -> list[torch.Tensor]:
    torch.manual_seed(1)
    prompt = torch.randn(1, 9, 32)
    inputs = [torch.randn(1, 1, 32) for _ in range(steps)]
    hidden = []
    with torch.inference_mode():
        out = model(inputs_embeds=prompt, past_key_values=cache, use_cache=True)
        for embed in inputs:
            out = model(inputs_embeds=embed, past_key_values=out.past_key_values, use_cache=True)
            hidden.append(out.last_hidden_state)
    return hidden


def test_decoding_matches_the_dynamic_cache() -> None:
    model = tiny_gpt2()
    for ours, theirs in zip(
        decode(model, GrowingCache(), 200), decode(model, DynamicCache(), 200), strict=True
    ):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_appending_reallocates_rarely() -> None:
    layer = GrowingLayer()
    buffers = set()
    for _ in range(1000):
        layer.update(torch.ones(2, 4, 1, 8), torch.ones(2, 4, 1, 8))
        assert layer._key_buffer is not None
        buffers.add(layer._key_buffer.data_ptr())
    assert layer.get_seq_length() == 1000
    assert layer.keys is not None and layer.keys.shape == (2, 4, 1000, 8)
    assert len(buffers) <= 10  # geometric growth, not one copy per token


def test_assigned_rows_are_adopted_and_appended_to() -> None:
    # What the batch does when a stream joins or leaves: replace the tensors wholesale.
    layer = GrowingLayer()
    layer.update(torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2))
    layer.keys = torch.arange(20.0).reshape(2, 1, 5, 2)
    layer.values = -torch.arange(20.0).reshape(2, 1, 5, 2)
    keys, values = layer.update(torch.full((2, 1, 1, 2), 99.0), torch.full((2, 1, 1, 2), -99.0))
    assert keys.shape == (2, 1, 6, 2) and layer.get_seq_length() == 6
    torch.testing.assert_close(keys[:, :, :5], torch.arange(20.0).reshape(2, 1, 5, 2))
    assert torch.all(keys[:, :, 5] == 99.0) and torch.all(values[:, :, 5] == -99.0)
    assert layer.spare_positions() > 0
