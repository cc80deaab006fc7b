"""A fast fake engine with the real engine's interface, for HTTP-level tests.

It produces a 220 Hz tone in chunks at a configurable pace, honours cancellation between
chunks (like the real engine between tokens) and records what it was asked.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Generator, Hashable, Iterator
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
from server.engine.schema import DEFAULT_LANGUAGE
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


# The 23 languages of Chatterbox's multilingual model (ISO 639-1), for a fake that speaks them.
MULTILINGUAL_LANGUAGES = (
    "ar", "da", "de", "el", "en", "es", "fi", "fr", "he", "hi", "it", "ja",
    "ko", "ms", "nl", "no", "pl", "pt", "ru", "sv", "sw", "tr", "zh",
)  # fmt: skip


def multilingual_fake(**options: Any) -> FakeEngine:
    """A fake engine that speaks what the multilingual model speaks."""
    return FakeEngine(
        **({"model_name": "fake-multilingual", "languages": MULTILINGUAL_LANGUAGES} | options)
    )


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
    languages: tuple[str, ...] = (DEFAULT_LANGUAGE,)
    unavailable_languages: dict[str, str] = field(default_factory=dict)
    requests: list[SynthesisRequest] = field(default_factory=list)
    produced: int = 0  # chunks made, across requests
    cancelled: int = 0
    threads: set[int] = field(default_factory=set)  # threads that generated
    _voices: FakeVoices = field(default_factory=FakeVoices)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _samples_made: dict[int, int] = field(default_factory=dict)

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
        if not request.text.strip() and request.text_feed is None:
            raise ValueError("text is empty")
        with self.lock:
            self.requests.append(request)
            self.threads.add(threading.get_ident())

    def chunk(
        self, request: SynthesisRequest, index: int, started: float, tokens: int = TOKENS_PER_CHUNK
    ) -> AudioChunk:
        """Chunk `index` (1-based) of `request`: a 220 Hz tone, continuous across chunks,
        `chunk_seconds` long for a full chunk of tokens."""
        if self.fail_after is not None and index > self.fail_after:
            raise RuntimeError("fake engine failure")
        samples = int(self.chunk_seconds * SAMPLE_RATE) * tokens // TOKENS_PER_CHUNK
        offset = self._samples_made.get(id(request), 0)  # requests stay alive in .requests
        self._samples_made[id(request)] = offset + samples
        t = (np.arange(samples) + offset) / SAMPLE_RATE
        audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        now = time.perf_counter() - started
        self.produced += 1
        seconds = (offset + samples) / SAMPLE_RATE
        return AudioChunk(
            index,
            audio,
            StreamMetrics(
                now if index == 1 else 0.0, now, now / max(seconds, 1e-9), seconds, index
            ),
        )

    def finished(self, chunk: AudioChunk, request: SynthesisRequest) -> AudioChunk:
        """`chunk` as the stream's last one."""
        summary = StreamSummary(self.tokens(request), False, 1, request.seed or 0)
        return replace(chunk, is_last=True, summary=summary)

    def segment_chunks(
        self, request: SynthesisRequest, cancel: threading.Event | None, block: bool = True
    ) -> Iterator[int | None]:
        """Chunks to make for each piece of text in turn; None: no more text yet (wait there
        for more unless not `block`: the batch scheduler asks again by itself)."""
        feed = request.text_feed
        if feed is None:
            yield self.chunks
            return
        while (taken := feed.take()) is not None:
            if taken:
                yield self.chunks * len(taken)
                continue
            yield None
            while block and not feed.ready():
                if cancel is not None and cancel.is_set():
                    self.cancelled += 1
                    raise Cancelled()
                feed.wait(0.02)

    def stream(
        self, request: SynthesisRequest, cancel: threading.Event | None = None
    ) -> Generator[AudioChunk, None, None]:
        self._begin(request)
        started = request.started_at or time.perf_counter()
        first, index, held = 0.0, 0, None
        # Each chunk is held until the next is known, so the last can say it is the last.
        for count in self.segment_chunks(request, cancel):
            for _ in range(count or 0):
                time.sleep(self.delay)
                if cancel is not None and cancel.is_set():
                    self.cancelled += 1
                    raise Cancelled()
                if held is not None:
                    yield held
                index += 1
                chunk = self.chunk(request, index, started)
                first = first or chunk.metrics.first_chunk_latency
                held = replace(chunk, metrics=replace(chunk.metrics, first_chunk_latency=first))
            if count is None and held is not None:  # waiting for text: send all there is
                yield held
                held = None
        if held is None:  # everything was sent while waiting: an empty last chunk
            index += 1
            held = self.chunk(request, index, started, tokens=0)
        yield self.finished(held, request)

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
    index: int
    text_tokens: Any
    t3_cond: Any
    cap: int
    cond_key: Hashable

    def new_generator(self) -> None:
        return None


class FakeStream:
    """One request's state for the batch scheduler: a chunk per `TOKENS_PER_CHUNK` tokens,
    each chunk held until more tokens follow (or the stream waits for text), so the last
    one is made by `last_chunk`."""

    def __init__(self, engine: FakeEngine, request: SynthesisRequest):
        self.engine = engine
        self.request = request
        self.accepted = 0
        self.segments = 0
        self.emitted_tokens = 0
        self.chunks_made = 0
        self.first = 0.0
        self._waiting = False
        self._texts = engine.segment_chunks(request, None, block=False)
        self._started = request.started_at or time.perf_counter()
        self._chunks: list[AudioChunk] = []

    def next_segment(self) -> FakePlan | None:
        self._waiting = False
        count = next(self._texts, 0)
        if count is None:
            self._waiting = True
            return None
        if count == 0:
            return None
        self.segments += 1
        tokens = count * TOKENS_PER_CHUNK
        return FakePlan(self.segments - 1, tokens, None, tokens, "fake")

    def upcoming_segment(self, ahead: int) -> None:
        return None  # the fake generates its segments in turn (the real engine's tests cover it)

    def waiting_for_text(self) -> bool:
        return self._waiting

    def accept(self, token: int) -> None:
        self.accepted += 1

    def hop(self) -> int:
        return TOKENS_PER_CHUNK

    def pending_tokens(self) -> int:
        return self.accepted - self.emitted_tokens

    def chunk_due(self) -> bool:
        pending = self.pending_tokens()
        return pending > TOKENS_PER_CHUNK or (self._waiting and pending > 0)

    def buffered_seconds(self) -> float:
        return 0.0

    def prompt_tokens(self) -> int:
        return 0

    def last_chunk_tokens(self) -> int:
        return self.pending_tokens()

    def next_chunk(self) -> AudioChunk:
        self._chunks.append(self._make(min(self.pending_tokens(), TOKENS_PER_CHUNK)))
        return self._chunks[-1]

    def last_chunk(self) -> AudioChunk:
        self._chunks.append(self.engine.finished(self._make(self.pending_tokens()), self.request))
        return self._chunks[-1]

    def _make(self, tokens: int) -> AudioChunk:
        self.emitted_tokens += tokens
        self.chunks_made += 1
        chunk = self.engine.chunk(self.request, self.chunks_made, self._started, tokens)
        self.first = self.first or chunk.metrics.first_chunk_latency
        return replace(chunk, metrics=replace(chunk.metrics, first_chunk_latency=self.first))

    def whole(self) -> SynthesisResult:
        while self.pending_tokens() > TOKENS_PER_CHUNK:
            self.next_chunk()
        self.last_chunk()
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
        self._left[key] = int(text_tokens)  # the fake's plan: how many tokens to make
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
