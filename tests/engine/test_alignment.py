"""The alignment checks decide as upstream 0.1.7's `AlignmentStreamAnalyzer`, from attention
computed for the aligned heads only (no model checkpoint: a tiny Llama and synthetic maps)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from server.engine.alignment import ALIGNED_HEADS, FORCE, AlignmentGuard, aligned_attention
from server.engine.kv_cache import GrowingCache

VOCAB = 64
STOP = 7
CONDITIONING = 4  # positions before the text


class _Backbone(torch.nn.Module):
    """What upstream's analyzer touches: attention modules to hook and a config to switch."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList()
        for _ in range(max(layer for layer, _ in ALIGNED_HEADS) + 1):
            layer = torch.nn.Module()
            layer.self_attn = torch.nn.Identity()
            self.layers.append(layer)
        self.config = SimpleNamespace(output_attentions=False, _attn_implementation="sdpa")


def _upstream_analyzer(text_length: int) -> Any:
    from chatterbox.models.t3.inference.alignment_stream_analyzer import (
        AlignmentStreamAnalyzer,
    )

    text = (CONDITIONING, CONDITIONING + text_length)
    return AlignmentStreamAnalyzer(_Backbone(), None, text, alignment_layer_idx=9, eos_idx=STOP)


def _frames(text_length: int, ending: str, frames: int, seed: int) -> list[torch.Tensor]:
    """Per frame, the three heads' attention rows over the whole sequence (2 rows at first):
    a peak that walks along the text, then `ending`: "tail" stays on the last tokens,
    "repeat" jumps back to the start, "walk" keeps wandering."""
    generator = torch.Generator().manual_seed(seed)
    length = CONDITIONING + text_length + 2
    maps = []
    for frame in range(frames):
        rows = 2 if frame == 0 else 1
        heads = torch.rand(3, rows, length + frame, generator=generator) * 0.05
        walk = min(frame, text_length - 1)
        if ending == "tail" or frame < text_length:
            target = walk
        elif ending == "repeat":
            target = frame % 3
        else:
            target = int(torch.randint(0, text_length, (1,), generator=generator))
        heads[:, :, CONDITIONING + target] += 0.9
        maps.append(heads)
    return maps


@pytest.mark.parametrize(
    ("ending", "tokens"),
    [
        ("tail", list(range(100, 140))),
        ("repeat", list(range(100, 140))),
        ("walk", list(range(100, 140))),
        ("walk", [100, 101, 102, 102, *range(103, 140)]),  # a token twice in a row
    ],
)
def test_decisions_equal_upstream_analyzer(ending: str, tokens: list[int]) -> None:
    text_length = 12
    upstream = _upstream_analyzer(text_length)
    ours = AlignmentGuard(CONDITIONING, CONDITIONING + text_length, STOP)
    generator = torch.Generator().manual_seed(3)
    forced = 0
    for frame, heads in enumerate(_frames(text_length, ending, 40, seed=len(tokens))):
        # Upstream's hooks keep each head's full map (the prompt's first): the mean is ours.
        upstream.last_aligned_attns = [
            torch.cat([torch.zeros(heads.shape[2] - 2, heads.shape[2]), h]) if frame == 0 else h
            for h in heads
        ]
        logits = torch.randn(1, VOCAB, generator=generator)
        expected = upstream.step(logits.clone(), next_token=tokens[frame])
        got = ours.step(heads.mean(dim=0), logits.clone(), tokens[frame])
        assert torch.equal(got, expected), frame
        forced += int(got[0, STOP] == FORCE)
    assert ours.completed_at == upstream.completed_at
    assert torch.equal(ours.alignment, upstream.alignment)
    assert forced > 0  # each schedule ends in a forced stop token


def test_short_texts_never_crash() -> None:
    # Upstream raises on a text of 5 tokens or fewer once the alignment completes (the maximum
    # of an empty slice); there is no earlier text to return to, so no repetition.
    upstream = _upstream_analyzer(4)
    ours = AlignmentGuard(CONDITIONING, CONDITIONING + 4, STOP)
    frames = _frames(4, "walk", 12, seed=1)
    with pytest.raises(IndexError):
        for frame, heads in enumerate(frames):
            upstream.last_aligned_attns = [
                torch.cat([torch.zeros(heads.shape[2] - 2, heads.shape[2]), h]) if frame == 0 else h
                for h in heads
            ]
            upstream.step(torch.zeros(1, VOCAB), next_token=100 + frame)
    for frame, heads in enumerate(frames):
        logits = ours.step(heads.mean(dim=0), torch.zeros(1, VOCAB), 100 + frame)
        assert torch.isfinite(logits).all()
    assert ours.completed_at is not None


def _tiny_llama() -> Any:
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=max(layer for layer, _ in ALIGNED_HEADS) + 1,
        num_attention_heads=16,
        num_key_value_heads=16,
        head_dim=4,
        vocab_size=8,
        attn_implementation="eager",
    )
    model = LlamaModel(config)
    torch.nn.Module.eval(model)
    for parameter in model.parameters():  # sharper attention than the initialisation's
        parameter.data.normal_(0, 0.3)
    return SimpleNamespace(tfmr=model)


def _eager_mean(attentions: tuple[torch.Tensor, ...], row: int, queries: slice) -> torch.Tensor:
    maps = [attentions[layer][row, head, queries] for layer, head in ALIGNED_HEADS]
    return torch.stack(maps).mean(dim=0)


@torch.inference_mode()
def test_aligned_attention_equals_eager_attention_of_the_aligned_heads() -> None:
    t3 = _tiny_llama()
    backbone = t3.tfmr
    # Two streams' prompts of different lengths, left-padded into one batch as T3Batch does.
    short, long = torch.randn(1, 6, 64), torch.randn(1, 9, 64)
    padded = torch.cat([F.pad(short, (0, 0, 3, 0)), long])
    mask = torch.tensor([[0, 0, 0] + [1] * 6, [1] * 9])
    positions = torch.tensor([[0, 0, 0, *range(6)], list(range(9))])
    out = backbone(
        inputs_embeds=padded,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=GrowingCache(),
        use_cache=True,
        output_attentions=True,
        output_hidden_states=True,
    )
    cache = out.past_key_values
    # The prompt: each stream's two last positions, over its own columns.
    for row, start, length in ((0, 3, 6), (1, 0, 9)):
        queries = torch.arange(length - 2, length)
        ours = aligned_attention(t3, out.hidden_states, cache, row, start, queries)
        eager = _eager_mean(out.attentions, row, slice(-2, None))[:, start:]
        assert torch.allclose(ours, eager, atol=1e-6)

    # A decode step: one new position per stream.
    step = backbone(
        inputs_embeds=torch.randn(2, 1, 64),
        attention_mask=F.pad(mask, (0, 1), value=1),
        position_ids=torch.tensor([[6], [9]]),
        past_key_values=cache,
        use_cache=True,
        output_attentions=True,
        output_hidden_states=True,
    )
    for row, start, position in ((0, 3, 6), (1, 0, 9)):
        here = torch.tensor([position])
        ours = aligned_attention(t3, step.hidden_states, cache, row, start, here)
        eager = _eager_mean(step.attentions, row, slice(-1, None))[:, start:]
        assert ours.shape == (1, position + 1)
        assert torch.allclose(ours, eager, atol=1e-6)
