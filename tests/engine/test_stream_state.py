"""Streams whose chunks share one flow call get the audio they would get alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from server.engine.engine import AudioChunk, EngineConfig, StreamingEngine, SynthesisRequest
from server.engine.loading import LoadedModel
from server.engine.sampling import TURBO_DEFAULTS
from server.engine.stream_state import StreamState, last_chunks_together, next_chunks_together

pytestmark = pytest.mark.model


def _fed(engine: StreamingEngine, seed: int, tokens: torch.Tensor) -> StreamState:
    request = SynthesisRequest("Sharing.", TURBO_DEFAULTS, chunk_size=20, seed=seed)
    state = engine.start(request)
    for token in tokens.tolist():
        state.accept(token)
    return state


def _close(mine: AudioChunk, alone: AudioChunk) -> bool:
    scale = float(np.abs(alone.audio).max())
    return mine.audio.shape == alone.audio.shape and np.allclose(
        mine.audio, alone.audio, atol=1e-4 * scale
    )


def test_chunks_made_together_equal_chunks_made_alone(turbo_model: LoadedModel) -> None:
    engine = StreamingEngine(turbo_model, EngineConfig(watermark=False, first_chunk_tokens=10))
    tokens = {
        seed: torch.randint(0, 6561, (40,), generator=torch.Generator().manual_seed(seed))
        for seed in (1, 2)
    }
    alone = {seed: _fed(engine, seed, t[:15]) for seed, t in tokens.items()}
    together = {seed: _fed(engine, seed, t[:15]) for seed, t in tokens.items()}

    firsts = next_chunks_together(list(together.values()), count=12)
    solo_firsts = [state.next_chunk() for state in alone.values()]
    for seed, t in tokens.items():
        for state in (alone[seed], together[seed]):
            for token in t[15:].tolist():
                state.accept(token)
    assert together[1].last_chunk_tokens() == together[2].last_chunk_tokens() > 0
    lasts = last_chunks_together(list(together.values()))
    solo_lasts = [state.last_chunk() for state in alone.values()]

    for mine, solo in zip([*firsts, *lasts], [*solo_firsts, *solo_lasts], strict=True):
        assert _close(mine, solo)
    assert not np.allclose(firsts[0].audio, firsts[1].audio)
    assert [c.chunk_id for c in (firsts[0], lasts[0])] == [1, 2]
    assert lasts[0].is_last and lasts[0].summary is not None
