"""A fast fake engine with the real engine's interface, for HTTP-level tests.

It produces a 220 Hz tone in chunks at a configurable pace, honours cancellation between
chunks (like the real engine between tokens) and records what it was asked.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Generator, Hashable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from server.engine.conditionals import VoiceConditionals, decode_audio
from server.engine.engine import (
    AudioChunk,
    Cancelled,
    StreamMetrics,
    StreamSummary,
    SynthesisRequest,
    SynthesisResult,
)
from server.engine.types import SAMPLE_RATE, Audio


def fake_voice(key: str) -> VoiceConditionals:
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    digest = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    t3 = T3Cond(
        speaker_emb=torch.full((1, 256), float(digest % 1000)),
        cond_prompt_speech_tokens=torch.zeros(1, 4, dtype=torch.long),
        emotion_adv=torch.ones(1, 1, 1) * 0.5,
    )
    return VoiceConditionals(t3, {"prompt_token": torch.zeros(1, 4, dtype=torch.long)}, key)


class FakeVoices:
    def __init__(self) -> None:
        self._known: dict[str, VoiceConditionals] = {}

    def lookup(self, key: str) -> VoiceConditionals | None:
        return self._known.get(key)

    def decode(self, audio_bytes: bytes) -> Audio:
        return decode_audio(audio_bytes, 60.0)

    def from_decoded(self, key: str, wav: Audio) -> VoiceConditionals:
        self._known[key] = fake_voice(key)
        return self._known[key]


TOKENS_PER_CHUNK = 5  # the fake's T3 makes this many tokens per chunk of audio
FAKE_STOP_TOKEN = 6562


@dataclass
class FakeEngine:
    """Serves both runners: `stream`/`synthesize` for the serial one, `start` and
    `new_token_batch` for the batched one (a T3 step per token, a chunk per 5 tokens), with
    the same chunks, metrics and summaries either way."""

    chunk_seconds: float = 0.2  # audio per chunk
    delay: float = 0.02  # wall time per chunk
    chunks: int = 5
    fail_after: int | None = None  # raise after this many chunks
    model_name: str = "fake"
    device_name: str = "cpu"
    requests: list[SynthesisRequest] = field(default_factory=list)
    produced: int = 0  # chunks made, across requests
    cancelled: int = 0
    threads: set[int] = field(default_factory=set)  # threads that generated
    _voices: FakeVoices = field(default_factory=FakeVoices)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def voices(self) -> FakeVoices:
        return self._voices

    @property
    def stop_token(self) -> int:
        return FAKE_STOP_TOKEN

    @property
    def shares_flow_calls(self) -> bool:
        return False

    def tokens(self, request: SynthesisRequest) -> list[int]:
        """The speech tokens the fake reports for `request` (its summary)."""
        seed = request.seed if request.seed is not None else 0
        rng = np.random.default_rng(seed + len(request.text))
        count = self.chunks * 5 if request.max_new_tokens is None else request.max_new_tokens
        return [int(t) for t in rng.integers(0, 6561, size=count)]

    def _begin(self, request: SynthesisRequest) -> None:
        if not request.text.strip():
            raise ValueError("text is empty")
        with self.lock:
            self.requests.append(request)
            self.threads.add(threading.get_ident())

    def chunk(self, request: SynthesisRequest, index: int, started: float) -> AudioChunk:
        """Chunk `index` (1-based) of `request`: a 220 Hz tone, continuous across chunks."""
        if self.fail_after is not None and index > self.fail_after:
            raise RuntimeError("fake engine failure")
        samples = int(self.chunk_seconds * SAMPLE_RATE)
        t = (np.arange(samples) + (index - 1) * samples) / SAMPLE_RATE
        audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        now = time.perf_counter() - started
        self.produced += 1
        last = index == self.chunks
        return AudioChunk(
            index,
            audio,
            StreamMetrics(
                now if index == 1 else 0.0,
                now,
                now / (index * self.chunk_seconds),
                index * self.chunk_seconds,
                index,
            ),
            is_last=last,
            summary=StreamSummary(self.tokens(request), False, 1, request.seed or 0)
            if last
            else None,
        )

    def stream(
        self, request: SynthesisRequest, cancel: threading.Event | None = None
    ) -> Generator[AudioChunk, None, None]:
        self._begin(request)
        started = request.started_at or time.perf_counter()
        first = 0.0
        for index in range(1, self.chunks + 1):
            time.sleep(self.delay)
            if cancel is not None and cancel.is_set():
                self.cancelled += 1
                raise Cancelled()
            chunk = self.chunk(request, index, started)
            first = first or chunk.metrics.first_chunk_latency
            yield replace(chunk, metrics=replace(chunk.metrics, first_chunk_latency=first))

    def synthesize(
        self, request: SynthesisRequest, cancel: threading.Event | None = None
    ) -> SynthesisResult:
        return _whole(list(self.stream(request, cancel)))

    # --- the batched runner's side ---------------------------------------------------------

    def start(self, request: SynthesisRequest, streaming: bool = True) -> FakeStream:
        self._begin(request)
        return FakeStream(self, request)

    def new_token_batch(self) -> FakeTokenBatch:
        return FakeTokenBatch(self)

    def next_chunks_together(self, streams: list[Any], count: int) -> list[AudioChunk]:
        raise AssertionError("the fake never shares flow calls")

    def last_chunks_together(self, streams: list[Any]) -> list[AudioChunk]:
        raise AssertionError("the fake never shares flow calls")


def _whole(chunks: list[AudioChunk]) -> SynthesisResult:
    audio = np.concatenate([c.audio for c in chunks])
    assert chunks[-1].summary is not None
    return SynthesisResult(audio, chunks[-1].metrics, chunks[-1].summary)


@dataclass(frozen=True)
class FakePlan:
    text_tokens: Any
    t3_cond: Any
    cap: int
    cond_key: Hashable


class FakeStream:
    """One request's state for the batch scheduler: a chunk per `TOKENS_PER_CHUNK` tokens."""

    def __init__(self, engine: FakeEngine, request: SynthesisRequest):
        self.engine = engine
        self.request = request
        self.generator = None
        self.accepted = 0
        self.emitted = 0  # chunks
        self.first = 0.0
        self._planned = False
        self._started = request.started_at or time.perf_counter()
        self._chunks: list[AudioChunk] = []

    def next_segment(self) -> FakePlan | None:
        if self._planned:
            return None
        self._planned = True
        return FakePlan(None, None, self.engine.chunks * TOKENS_PER_CHUNK, "fake")

    def waiting_for_text(self) -> bool:
        return False

    def accept(self, token: int) -> None:
        self.accepted += 1

    def hop(self) -> int:
        return TOKENS_PER_CHUNK

    def pending_tokens(self) -> int:
        return self.accepted - self.emitted * TOKENS_PER_CHUNK

    def chunk_due(self) -> bool:
        return self.pending_tokens() >= self.hop()

    def buffered_seconds(self) -> float:
        return 0.0

    def prompt_tokens(self) -> int:
        return 0

    def last_chunk_tokens(self) -> int:
        return self.pending_tokens()

    def next_chunk(self) -> AudioChunk:
        self.emitted += 1
        chunk = self.engine.chunk(self.request, self.emitted, self._started)
        self.first = self.first or chunk.metrics.first_chunk_latency
        chunk = replace(chunk, metrics=replace(chunk.metrics, first_chunk_latency=self.first))
        self._chunks.append(chunk)
        return chunk

    def last_chunk(self) -> AudioChunk:
        return self.next_chunk()

    def whole(self) -> SynthesisResult:
        while self.emitted < self.engine.chunks:
            self.next_chunk()
        return _whole(self._chunks)


class FakeTokenBatch:
    """T3 for fake streams: one token per stream per step, `delay` per chunk of tokens."""

    def __init__(self, engine: FakeEngine):
        self.engine = engine
        self._left: dict[Hashable, int] = {}

    def __len__(self) -> int:
        return len(self._left)

    @property
    def keys(self) -> list[Hashable]:
        return list(self._left)

    def add(
        self,
        key: Hashable,
        t3_cond: Any,
        text_tokens: Any,
        params: Any,
        generator: Any,
        cond_key: Hashable | None = None,
    ) -> int:
        self._left[key] = self.engine.chunks * TOKENS_PER_CHUNK
        return self._next(key)

    def step(self) -> dict[Hashable, int]:
        time.sleep(self.engine.delay / TOKENS_PER_CHUNK)
        return {key: self._next(key) for key in list(self._left)}

    def _next(self, key: Hashable) -> int:
        self._left[key] -= 1
        return 1 if self._left[key] >= 0 else FAKE_STOP_TOKEN

    def remove(self, key: Hashable) -> None:
        if self._left.pop(key) > 0:  # left before its last token: cancelled
            self.engine.cancelled += 1
