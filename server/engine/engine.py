"""The streaming engine: text in, seamless audio chunks out, while T3 is still generating.

Synchronous and single-threaded by design: one call uses the device until it returns or its
generator is closed. `server.engine.runner.EngineRunner` puts it behind asyncio.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from server.engine.conditionals import ConditionalsCache, VoiceConditionals, builtin_voice
from server.engine.loading import LoadedModel, ModelVariant
from server.engine.sampling import SamplingParams
from server.engine.text import (
    TOKEN_MARGIN,
    TOKENS_PER_CHAR,
    default_token_cap,
    normalize_punctuation,
    split_into_segments,
)
from server.engine.token2wav import NoiseTape, Token2WavStreamer
from server.engine.token_stream import original_speech_tokens, turbo_speech_tokens
from server.engine.types import Audio
from server.engine.watermark import StreamWatermarker, mark_whole, new_watermarker

logger = logging.getLogger(__name__)

SAMPLE_RATE = 24000
SPEECH_VOCAB_SIZE = 6561  # S3 tokens; T3's start/stop tokens lie above
SILENCE_TOKEN = 4299  # upstream S3GEN_SIL
TRAILING_SILENCE_TOKENS = 3  # upstream Turbo appends these before decoding
MIN_CHUNK_SIZE, MAX_CHUNK_SIZE = 10, 200
DEFAULT_CHUNK_SIZE = 50
# Turbo stops after 1000 tokens (40 s) per call upstream; the original model likewise.
MODEL_MAX_TOKENS_PER_SEGMENT = 1000


@dataclass(frozen=True)
class EngineConfig:
    first_chunk_tokens: int = 10
    watermark: bool = True
    max_segment_chars: int = 300
    # What the flow sees before a chunk's new tokens: the last `stream_reference_tokens` of the
    # voice prompt (None: all of it, up to 10 s = 250 tokens) and the last
    # `flow_context_tokens` tokens already streamed. This bounds a chunk's cost whatever the
    # length of the stream; regular synthesis always uses the whole voice prompt (upstream).
    stream_reference_tokens: int | None = 100
    flow_context_tokens: int = 50
    voice_cache_size: int = 64
    max_prompt_seconds: float = 60.0
    # Default per-segment token cap = chars * cap_tokens_per_char + cap_token_margin.
    cap_tokens_per_char: float = TOKENS_PER_CHAR
    cap_token_margin: int = TOKEN_MARGIN


@dataclass(frozen=True)
class SynthesisRequest:
    text: str
    params: SamplingParams = field(default_factory=SamplingParams)
    chunk_size: int = DEFAULT_CHUNK_SIZE
    seed: int | None = None
    max_new_tokens: int | None = None
    voice: VoiceConditionals | None = None  # None: the checkpoint's built-in voice
    first_chunk_tokens: int | None = None  # None: the engine's configured value
    # perf_counter() when the request arrived, so latencies include queueing; None: now.
    started_at: float | None = None


@dataclass(frozen=True)
class StreamMetrics:
    """The seeds' per-chunk metrics (seconds; rtf = generation time / audio time)."""

    first_chunk_latency: float
    total_latency: float
    rtf: float
    total_audio_duration: float
    chunks_generated: int


@dataclass(frozen=True)
class StreamSummary:
    speech_tokens: list[int]
    token_cap_hit: bool
    segments: int
    seed: int


@dataclass(frozen=True)
class AudioChunk:
    chunk_id: int  # 1, 2, 3, ... as in the seeds
    audio: Audio  # float32, mono, SAMPLE_RATE
    metrics: StreamMetrics
    is_last: bool = False
    summary: StreamSummary | None = None  # on the last chunk


@dataclass
class SynthesisResult:
    audio: Audio
    metrics: StreamMetrics
    summary: StreamSummary


class Cancelled(Exception):
    """The consumer went away; the device has been released."""


class VoiceSource(Protocol):
    """Where voices from audio prompts come from (`ConditionalsCache`)."""

    def lookup(self, key: str) -> VoiceConditionals | None: ...
    def decode(self, audio_bytes: bytes) -> Audio: ...
    def from_decoded(self, key: str, wav: Audio) -> VoiceConditionals: ...


class SpeechEngine(Protocol):
    """What the server needs of an engine; `StreamingEngine` is the real one."""

    @property
    def model_name(self) -> str: ...
    @property
    def device_name(self) -> str: ...
    @property
    def voices(self) -> VoiceSource: ...

    def stream(
        self, request: SynthesisRequest, cancel: threading.Event | None = None
    ) -> Generator[AudioChunk, None, None]: ...

    def synthesize(
        self, request: SynthesisRequest, cancel: threading.Event | None = None
    ) -> SynthesisResult: ...


class StreamingEngine:
    def __init__(self, model: LoadedModel, config: EngineConfig | None = None):
        self.model = model
        self.config = config or EngineConfig()
        self._voices = ConditionalsCache(
            model, self.config.voice_cache_size, self.config.max_prompt_seconds
        )
        self._watermarker = new_watermarker() if self.config.watermark else None
        self._builtin = builtin_voice(model)

    @property
    def voices(self) -> ConditionalsCache:
        return self._voices

    @property
    def model_name(self) -> str:
        return self.model.variant.value

    @property
    def device_name(self) -> str:
        return str(self.model.device)

    @property
    def n_timesteps(self) -> int:
        return 2 if self.model.meanflow else 10

    def stream(
        self, request: SynthesisRequest, cancel: threading.Event | None = None
    ) -> Generator[AudioChunk, None, None]:
        """Audio chunks as T3 generates; the last one has `is_last`, the final metrics and the
        stream's summary. Raises `Cancelled` soon after `cancel` is set."""
        clock = _Clock(request.started_at or time.perf_counter())
        run = self._start(request)
        first_hop = request.first_chunk_tokens or self.config.first_chunk_tokens
        marker = StreamWatermarker(self._watermarker) if self._watermarker else None
        chunk_id = 0
        for _ in run.token_batches(cancel):
            hop = first_hop if chunk_id == 0 else request.chunk_size
            if run.streamer.pending_tokens(len(run.tokens), finalize=False) < hop:
                continue
            audio = run.streamer.decode(run.token_tensor(), finalize=False)
            if marker is not None:
                audio_np = marker.mark(_np(audio), _np(run.streamer.held_back))
            else:
                audio_np = _np(audio)
            chunk_id += 1
            yield AudioChunk(chunk_id, audio_np, clock.metrics(audio_np.size, chunk_id))
        run.finish()
        audio_np = _np(run.streamer.decode(run.token_tensor(), finalize=True))
        if marker is not None:
            audio_np = marker.mark(audio_np, None)
        chunk_id += 1
        yield AudioChunk(
            chunk_id,
            audio_np,
            clock.metrics(audio_np.size, chunk_id),
            is_last=True,
            summary=run.summary(),
        )

    def synthesize(
        self, request: SynthesisRequest, cancel: threading.Event | None = None
    ) -> SynthesisResult:
        """Regular synthesis: all tokens first, then one decoding pass (upstream `generate`)."""
        clock = _Clock(request.started_at or time.perf_counter())
        run = self._start(request, streaming=False)
        for _ in run.token_batches(cancel):
            pass
        run.finish()
        audio = _np(run.streamer.decode_offline(run.token_tensor()))
        if self._watermarker is not None:
            audio = mark_whole(self._watermarker, audio)
        metrics = clock.metrics(audio.size, 1)
        return SynthesisResult(audio, metrics, run.summary())

    def speech_tokens(self, request: SynthesisRequest) -> list[int]:
        run = self._start(request)
        for _ in run.token_batches(None):
            pass
        return run.raw_tokens

    def _start(self, request: SynthesisRequest, streaming: bool = True) -> _Run:
        voice = request.voice or self._builtin
        if voice is None:
            raise ValueError("this checkpoint has no built-in voice: an audio prompt is required")
        if not MIN_CHUNK_SIZE <= request.chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be {MIN_CHUNK_SIZE}-{MAX_CHUNK_SIZE}")
        segments = split_into_segments(request.text, self.config.max_segment_chars)
        if not segments:
            raise ValueError("text is empty")
        seed = request.seed if request.seed is not None else _random_seed()
        device = self.model.device
        t3_cond, ref = voice.for_request(request.params.exaggeration, device)
        streamer = Token2WavStreamer(
            self.model.s3gen,
            ref,
            # The flow's noise has its own generator so it does not depend on how many tokens
            # were sampled; both derive from the request seed for reproducibility.
            NoiseTape(seed + 1, device),
            meanflow=self.model.meanflow,
            n_timesteps=self.n_timesteps,
            reference_tokens=self.config.stream_reference_tokens if streaming else None,
            context_tokens=self.config.flow_context_tokens,
        )
        return _Run(self.model, self.config, request, segments, seed, t3_cond, streamer)


class _Clock:
    def __init__(self, started: float):
        self.started = started
        self.first_chunk: float | None = None
        self.audio_samples = 0

    def metrics(self, new_samples: int, chunks: int) -> StreamMetrics:
        now = time.perf_counter() - self.started
        if self.first_chunk is None:
            self.first_chunk = now
        self.audio_samples += new_samples
        audio_seconds = self.audio_samples / SAMPLE_RATE
        return StreamMetrics(
            first_chunk_latency=round(self.first_chunk, 4),
            total_latency=round(now, 4),
            rtf=round(now / audio_seconds, 4) if audio_seconds > 0 else 0.0,
            total_audio_duration=round(audio_seconds, 4),
            chunks_generated=chunks,
        )


class _Run:
    """One request's generation state: segments, tokens, the token-to-wave streamer."""

    def __init__(
        self,
        model: LoadedModel,
        config: EngineConfig,
        request: SynthesisRequest,
        segments: list[str],
        seed: int,
        t3_cond: object,
        streamer: Token2WavStreamer,
    ):
        self.model = model
        self.config = config
        self.request = request
        self.segments = segments
        self.seed = seed
        self.t3_cond = t3_cond
        self.streamer = streamer
        self.tokens: list[int] = []  # what S3Gen decodes
        self.raw_tokens: list[int] = []  # what T3 produced
        self.cap_hit = False
        self.generator = torch.Generator(device=model.device).manual_seed(seed)

    def token_batches(self, cancel: threading.Event | None) -> Iterator[int]:
        """Runs T3 over every segment; yields after each new token is appended."""
        budget = self.request.max_new_tokens
        for index, segment in enumerate(self.segments):
            if index > 0:
                # A short pause between sentence groups, as between upstream calls.
                self.tokens.extend([SILENCE_TOKEN] * TRAILING_SILENCE_TOKENS)
            cap = default_token_cap(
                segment,
                MODEL_MAX_TOKENS_PER_SEGMENT,
                self.config.cap_tokens_per_char,
                self.config.cap_token_margin,
            )
            if budget is not None:
                cap = min(cap, budget - len(self.raw_tokens))
            if cap <= 0:
                self.cap_hit = True
                return
            produced = 0
            for token in self._token_source()(
                self.model.t3,
                self.t3_cond,
                self._text_tokens(segment),
                self.request.params,
                self.generator,
                cap,
            ):
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                self.raw_tokens.append(token)
                produced += 1
                if token < SPEECH_VOCAB_SIZE:
                    self.tokens.append(token)
                yield token
            if produced >= cap:
                self.cap_hit = True
                if budget is not None and len(self.raw_tokens) >= budget:
                    return

    def finish(self) -> None:
        if self.model.variant is ModelVariant.TURBO:
            self.tokens.extend([SILENCE_TOKEN] * TRAILING_SILENCE_TOKENS)

    def token_tensor(self) -> torch.Tensor:
        return torch.tensor(self.tokens, dtype=torch.long, device=self.model.device)

    def summary(self) -> StreamSummary:
        return StreamSummary(list(self.raw_tokens), self.cap_hit, len(self.segments), self.seed)

    def _token_source(self) -> Callable[..., Iterator[int]]:
        if self.model.variant is ModelVariant.TURBO:
            return turbo_speech_tokens
        return original_speech_tokens

    def _text_tokens(self, segment: str) -> torch.Tensor:
        tokens = self.model.text_to_tokens(normalize_punctuation(segment))
        if self.model.variant is ModelVariant.ORIGINAL:
            t3 = self.model.t3
            tokens = torch.nn.functional.pad(tokens, (1, 0), value=t3.hp.start_text_token)
            tokens = torch.nn.functional.pad(tokens, (0, 1), value=t3.hp.stop_text_token)
        return tokens


def _np(audio: torch.Tensor | None) -> Audio:
    if audio is None:
        return np.zeros(0, dtype=np.float32)
    return audio.detach().to("cpu", torch.float32).numpy()


def _random_seed() -> int:
    return int(torch.randint(0, 2**31 - 1, (1,)).item())


__all__ = [
    "AudioChunk",
    "Cancelled",
    "EngineConfig",
    "StreamMetrics",
    "StreamingEngine",
    "SynthesisRequest",
    "SynthesisResult",
]
