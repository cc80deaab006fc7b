"""The streaming engine end to end on the full-size random checkpoint."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile
import torch

from server.engine.conditionals import AudioPromptError
from server.engine.engine import (
    AudioChunk,
    Cancelled,
    EngineConfig,
    StreamingEngine,
    SynthesisRequest,
)
from server.engine.loading import LoadedModel
from server.engine.token2wav import SAMPLES_PER_MEL_FRAME, VOCODER_CACHE_SAMPLES

TEXT = "Streaming speech, one chunk at a time."
SAMPLES_PER_TOKEN = 2 * SAMPLES_PER_MEL_FRAME


@pytest.fixture(scope="module")
def engine(turbo_model: LoadedModel) -> StreamingEngine:
    return StreamingEngine(turbo_model, EngineConfig(watermark=False, first_chunk_tokens=8))


def _collect(chunks: Iterator[AudioChunk]) -> list[AudioChunk]:
    return list(chunks)


@pytest.mark.model
def test_stream_chunks_are_contiguous_and_match_regular_synthesis(engine: StreamingEngine) -> None:
    request = SynthesisRequest(TEXT, chunk_size=12, seed=11, max_new_tokens=40)
    chunks = _collect(engine.stream(request))
    assert [c.chunk_id for c in chunks] == list(range(1, len(chunks) + 1))
    assert [c.is_last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert [c.metrics.chunks_generated for c in chunks] == [c.chunk_id for c in chunks]
    summary = chunks[-1].summary
    assert summary is not None and summary.token_cap_hit and len(summary.speech_tokens) == 40

    # First chunk right after the configured 8 tokens (+3 lookahead): 8 tokens of audio
    # less the tail held back for the crossfade.
    assert chunks[0].audio.size == 8 * SAMPLES_PER_TOKEN - VOCODER_CACHE_SAMPLES
    streamed = np.concatenate([c.audio for c in chunks])
    # Turbo appends 3 silence tokens at the end, as upstream does.
    assert streamed.size == (40 + 3) * SAMPLES_PER_TOKEN
    assert chunks[-1].metrics.total_audio_duration == pytest.approx(streamed.size / 24000, abs=1e-3)

    regular = engine.synthesize(request)
    assert regular.summary.speech_tokens == summary.speech_tokens
    assert regular.audio.size == streamed.size
    assert np.isfinite(streamed).all()


@pytest.mark.model
def test_long_text_streams_sentence_groups_as_one_stream(turbo_model: LoadedModel) -> None:
    engine = StreamingEngine(
        turbo_model,
        EngineConfig(
            watermark=False, max_segment_chars=30, cap_tokens_per_char=0.2, cap_token_margin=2
        ),
    )
    text = "First sentence is here. Second one follows it. And a third one ends."
    chunks = _collect(engine.stream(SynthesisRequest(text, chunk_size=10, seed=2)))
    summary = chunks[-1].summary
    assert summary is not None and summary.segments == 3 and summary.token_cap_hit
    assert [c.chunk_id for c in chunks] == list(range(1, len(chunks) + 1))
    tokens = len(summary.speech_tokens)
    # Each later segment starts after 3 pause tokens; the end gets 3 silence tokens.
    assert sum(c.audio.size for c in chunks) == (tokens + 3 * 2 + 3) * SAMPLES_PER_TOKEN


@pytest.mark.model
def test_cancel_stops_generation_within_a_token(engine: StreamingEngine) -> None:
    cancel = threading.Event()
    stream = engine.stream(
        SynthesisRequest(TEXT, chunk_size=10, seed=1, max_new_tokens=300), cancel
    )
    first = next(stream)
    assert first.chunk_id == 1
    cancel.set()
    started = time.perf_counter()
    with pytest.raises(Cancelled):
        next(stream)
    # One T3 step at most (~0.1 s here), never the rest of a 300-token stream.
    assert time.perf_counter() - started < 5


@pytest.mark.model
def test_same_seed_same_tokens_different_seed_different_tokens(engine: StreamingEngine) -> None:
    a = engine.speech_tokens(SynthesisRequest(TEXT, seed=5, max_new_tokens=10))
    b = engine.speech_tokens(SynthesisRequest(TEXT, seed=5, max_new_tokens=10))
    c = engine.speech_tokens(SynthesisRequest(TEXT, seed=6, max_new_tokens=10))
    assert a == b and a != c


def _wav_bytes(seconds: float) -> bytes:
    t = np.arange(int(seconds * 24000)) / 24000
    wav = (0.3 * np.sin(2 * np.pi * (120 + 40 * np.sin(t)) * t)).astype(np.float32)
    buf = io.BytesIO()
    soundfile.write(buf, wav, 24000, format="WAV")
    return buf.getvalue()


@pytest.mark.model
def test_voice_prompt_is_cached_by_content_and_never_mutated(engine: StreamingEngine) -> None:
    audio = _wav_bytes(6.0)
    voice = engine.voices.get(audio)
    assert engine.voices.get(audio) is voice  # served from the cache, not recomputed
    before = {k: v.clone() for k, v in voice.gen.items() if torch.is_tensor(v)}
    _collect(engine.stream(SynthesisRequest(TEXT, seed=1, max_new_tokens=12, voice=voice)))
    assert voice.t3.cond_prompt_speech_emb is None
    for key, tensor in before.items():
        assert torch.equal(voice.gen[key], tensor) and voice.gen[key].dtype == tensor.dtype


@pytest.mark.model
def test_bad_prompts_are_clear_errors(engine: StreamingEngine) -> None:
    with pytest.raises(AudioPromptError, match="longer than 5 s"):
        engine.voices.get(_wav_bytes(3.0))
    with pytest.raises(AudioPromptError, match="could not be decoded"):
        engine.voices.get(b"RIFF....WAVEfmt garbage")


def test_invalid_requests_are_value_errors(engine: StreamingEngine) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        engine.speech_tokens(SynthesisRequest(TEXT, chunk_size=5))
    with pytest.raises(ValueError, match="empty"):
        engine.speech_tokens(SynthesisRequest("   "))


@pytest.mark.model
def test_watermarked_stream_matches_watermarking_the_whole(turbo_model: LoadedModel) -> None:
    marked = StreamingEngine(turbo_model, EngineConfig(watermark=True, first_chunk_tokens=8))
    plain = StreamingEngine(turbo_model, EngineConfig(watermark=False, first_chunk_tokens=8))
    request = SynthesisRequest(TEXT, chunk_size=10, seed=9, max_new_tokens=30)
    streamed_marked = np.concatenate([c.audio for c in marked.stream(request)])
    streamed_plain = np.concatenate([c.audio for c in plain.stream(request)])
    assert streamed_marked.size == streamed_plain.size
    assert not np.allclose(streamed_marked, streamed_plain)
    assert np.isfinite(streamed_marked).all()
