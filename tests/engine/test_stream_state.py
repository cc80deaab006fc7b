"""Streams whose chunks share one flow call get the audio they would get alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from server.engine.conditionals import builtin_voice
from server.engine.engine import AudioChunk, EngineConfig, StreamingEngine, SynthesisRequest
from server.engine.loading import LoadedModel
from server.engine.sampling import TURBO_DEFAULTS
from server.engine.schema import FLOW_MATCHING_WINDOW, MEAN_FLOW_WINDOW, FlowWindow
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


# Both decoders: Turbo's mean flow, and the flow matching with guidance of the original and
# multilingual models (the multilingual one stands for both: the same S3Gen).
@pytest.mark.parametrize("model_fixture", ["turbo_model", "multilingual_model"])
def test_chunks_made_together_equal_chunks_made_alone(
    model_fixture: str, request: pytest.FixtureRequest
) -> None:
    model: LoadedModel = request.getfixturevalue(model_fixture)
    # A short voice prompt in the flow keeps the flow-matching decoder's ten steps quick.
    config = EngineConfig(watermark=False, first_chunk_tokens=10, flow_window=FlowWindow(10, 10))
    engine = StreamingEngine(model, config)
    tokens = {
        seed: torch.randint(0, 6561, (30,), generator=torch.Generator().manual_seed(seed))
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


@pytest.mark.parametrize(
    ("model_fixture", "window"),
    [("turbo_model", MEAN_FLOW_WINDOW), ("multilingual_model", FLOW_MATCHING_WINDOW)],
)
def test_each_decoder_streams_with_its_own_flow_window(
    model_fixture: str, window: FlowWindow, request: pytest.FixtureRequest
) -> None:
    model: LoadedModel = request.getfixturevalue(model_fixture)
    engine = StreamingEngine(model, EngineConfig(watermark=False))
    speech = SynthesisRequest("Windows.", TURBO_DEFAULTS, seed=1)
    whole_prompt = builtin_voice(model)
    assert whole_prompt is not None
    prompt_tokens = int(whole_prompt.gen["prompt_token"].shape[1])
    assert window.reference_tokens is not None and prompt_tokens > window.reference_tokens
    # Streaming re-reads the window's tail of the voice prompt; regular synthesis all of it.
    assert engine.start(speech).prompt_tokens() == window.reference_tokens
    assert engine.start(speech, streaming=False).prompt_tokens() == prompt_tokens
    assert engine.config.window_for(model.meanflow) == window
    told = FlowWindow(reference_tokens=7, context_tokens=3)
    assert EngineConfig(flow_window=told).window_for(model.meanflow) == told
