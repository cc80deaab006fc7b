"""What goes into and comes out of the engine: configuration, requests, chunks, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from server.engine.conditionals import VoiceConditionals
from server.engine.sampling import SamplingParams
from server.engine.text import TOKEN_MARGIN, TOKENS_PER_CHAR
from server.engine.text_feed import TextFeed
from server.engine.types import Audio

SPEECH_VOCAB_SIZE = 6561  # S3 tokens; T3's start/stop tokens lie above
SILENCE_TOKEN = 4299  # upstream S3GEN_SIL
TRAILING_SILENCE_TOKENS = 3  # upstream Turbo appends these before decoding
MIN_CHUNK_SIZE, MAX_CHUNK_SIZE = 10, 200
DEFAULT_CHUNK_SIZE = 50
# Turbo stops after 1000 tokens (40 s) per call upstream; the original model likewise.
MODEL_MAX_TOKENS_PER_SEGMENT = 1000
DEFAULT_LANGUAGE = "en"  # ISO 639-1; the English models speak only this


@dataclass(frozen=True)
class FlowWindow:
    """What the flow sees before a streamed chunk's new tokens: the last `reference_tokens` of
    the voice prompt (None: all of it, up to 10 s = 250 tokens) and the last `context_tokens`
    tokens already streamed, with their audio's mel frames. This bounds a chunk's cost
    whatever the length of the stream; regular synthesis always uses the whole voice prompt
    (upstream)."""

    reference_tokens: int | None
    context_tokens: int


# Each decoder's window. The flow re-reads it before every chunk at the decoder's cost per
# frame: Turbo's mean flow takes 2 steps; the flow matching of the original and multilingual
# models takes 10, each on a batch of two (guidance), ~10x the compute per frame. So the latter
# re-reads 2 s of voice prompt instead of 4 s. Measured on the CPU with the multilingual model
# in one run: time to first audio 0.132 -> 0.112 of regular synthesis, streaming overhead
# 1.28 -> 1.06, and streamed audio as close to regular synthesis as before (spectral distance
# 3.33 -> 3.34 dB, seams 1.003 -> 1.001 of it; docs/benchmarks.md).
MEAN_FLOW_WINDOW = FlowWindow(reference_tokens=100, context_tokens=50)
FLOW_MATCHING_WINDOW = FlowWindow(reference_tokens=50, context_tokens=50)


@dataclass(frozen=True)
class EngineConfig:
    first_chunk_tokens: int = 10
    watermark: bool = True
    max_segment_chars: int = 300
    flow_window: FlowWindow | None = None  # None: the decoder's own (`window_for`)
    voice_cache_size: int = 64
    max_prompt_seconds: float = 60.0
    # Default per-segment token cap = chars * cap_tokens_per_char + cap_token_margin.
    cap_tokens_per_char: float = TOKENS_PER_CHAR
    cap_token_margin: int = TOKEN_MARGIN
    # The multilingual model's attention-based end-of-speech checks, as upstream 0.1.7 runs
    # them (alignment.py); its later releases drop them.
    alignment_checks: bool = True

    def window_for(self, meanflow: bool) -> FlowWindow:
        """The flow window of streams on a model with (or without) the mean-flow decoder."""
        if self.flow_window is not None:
            return self.flow_window
        return MEAN_FLOW_WINDOW if meanflow else FLOW_MATCHING_WINDOW


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
    # Text-in streaming: `text` is ignored and segments come from the feed as they complete.
    text_feed: TextFeed | None = None
    language: str = DEFAULT_LANGUAGE  # one of the engine's `languages` (the server checks)


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
    # Where text segments begin within the stream (samples from its start) when they begin in
    # this chunk: lets a text-in client tell when each sentence's audio started.
    segment_starts: tuple[int, ...] = ()


@dataclass
class SynthesisResult:
    audio: Audio
    metrics: StreamMetrics
    summary: StreamSummary


class Cancelled(Exception):
    """The consumer went away; the device has been released."""
