"""A fast fake engine with the real engine's interface, for HTTP-level tests.

It produces a 220 Hz tone in chunks at a configurable pace, honours cancellation between
chunks (like the real engine between tokens) and records what it was asked.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field

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
from server.engine.types import Audio

SAMPLE_RATE = 24000


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


@dataclass
class FakeEngine:
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

    def _tokens(self, request: SynthesisRequest) -> list[int]:
        seed = request.seed if request.seed is not None else 0
        rng = np.random.default_rng(seed + len(request.text))
        count = self.chunks * 5 if request.max_new_tokens is None else request.max_new_tokens
        return [int(t) for t in rng.integers(0, 6561, size=count)]

    def stream(
        self, request: SynthesisRequest, cancel: threading.Event | None = None
    ) -> Generator[AudioChunk, None, None]:
        if not request.text.strip():
            raise ValueError("text is empty")
        with self.lock:
            self.requests.append(request)
            self.threads.add(threading.get_ident())
        started = request.started_at or time.perf_counter()
        samples = int(self.chunk_seconds * SAMPLE_RATE)
        first = 0.0
        for index in range(1, self.chunks + 1):
            time.sleep(self.delay)
            if cancel is not None and cancel.is_set():
                self.cancelled += 1
                raise Cancelled()
            if self.fail_after is not None and index > self.fail_after:
                raise RuntimeError("fake engine failure")
            t = (np.arange(samples) + (index - 1) * samples) / SAMPLE_RATE
            audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
            now = time.perf_counter() - started
            first = first or now
            self.produced += 1
            last = index == self.chunks
            yield AudioChunk(
                index,
                audio,
                StreamMetrics(
                    first,
                    now,
                    now / (index * self.chunk_seconds),
                    index * self.chunk_seconds,
                    index,
                ),
                is_last=last,
                summary=StreamSummary(self._tokens(request), False, 1, request.seed or 0)
                if last
                else None,
            )

    def synthesize(
        self, request: SynthesisRequest, cancel: threading.Event | None = None
    ) -> SynthesisResult:
        chunks = list(self.stream(request, cancel))
        audio = np.concatenate([c.audio for c in chunks])
        assert chunks[-1].summary is not None
        return SynthesisResult(audio, chunks[-1].metrics, chunks[-1].summary)
