"""The streaming engine: text in, seamless audio chunks out, while T3 is still generating.

Synchronous and single-threaded by design: one call uses the device until it returns or its
generator is closed. `server.engine.runners` put it behind asyncio, one stream at a time or
every stream of the device batched (which drives T3 through `start` and `new_token_batch`).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Generator, Iterator, Mapping
from typing import Protocol, cast

from server.engine.batching import BatchStream, TokenBatch
from server.engine.conditionals import ConditionalsCache, VoiceConditionals, builtin_voice
from server.engine.loading import LoadedModel, ModelVariant
from server.engine.multilingual_text import UnsupportedLanguageError
from server.engine.schema import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    AudioChunk,
    Cancelled,
    EngineConfig,
    StreamMetrics,
    StreamSummary,
    SynthesisRequest,
    SynthesisResult,
)
from server.engine.stream_state import StreamState, last_chunks_together, next_chunks_together
from server.engine.t3_batch import OriginalBatch, TurboBatch
from server.engine.text import split_into_segments
from server.engine.token_stream import original_speech_tokens, turbo_speech_tokens
from server.engine.types import SAMPLE_RATE, Audio
from server.engine.watermark import new_watermarker

logger = logging.getLogger(__name__)


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
    @property
    def languages(self) -> tuple[str, ...]:
        """The ISO 639-1 codes of the languages requests may ask for."""
        ...

    @property
    def unavailable_languages(self) -> Mapping[str, str]:
        """Languages the model speaks but cannot here (a missing text front-end), and why."""
        ...

    def stream(
        self, request: SynthesisRequest, cancel: threading.Event | None = None
    ) -> Generator[AudioChunk, None, None]: ...

    def synthesize(
        self, request: SynthesisRequest, cancel: threading.Event | None = None
    ) -> SynthesisResult: ...

    # What the batched runner drives (`batching.py`).
    @property
    def stop_token(self) -> int: ...
    @property
    def shares_flow_calls(self) -> bool:
        """Whether due chunks of several streams can share one flow call."""
        ...

    def start(self, request: SynthesisRequest, streaming: bool = True) -> BatchStream: ...
    def new_token_batch(self) -> TokenBatch: ...
    def next_chunks_together(self, streams: list[BatchStream], count: int) -> list[AudioChunk]: ...
    def last_chunks_together(self, streams: list[BatchStream]) -> list[AudioChunk]: ...


class StreamingEngine:
    def __init__(self, model: LoadedModel, config: EngineConfig | None = None):
        self.model = model
        self.config = config or EngineConfig()
        self._voices = ConditionalsCache(
            model, self.config.voice_cache_size, self.config.max_prompt_seconds
        )
        self._watermarker = new_watermarker(model.device) if self.config.watermark else None
        self._builtin = builtin_voice(model)
        # Upstream runs its alignment checks for the multilingual model only.
        self._alignment_checks = (
            self.config.alignment_checks and model.variant is ModelVariant.MULTILINGUAL
        )

    @property
    def voices(self) -> ConditionalsCache:
        return self._voices

    @property
    def model_name(self) -> str:
        return str(self.model.variant.value)

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages requests may ask for: the model's, less those it cannot speak here."""
        unavailable = self.model.unavailable_languages
        return tuple(code for code in self.model.languages if code not in unavailable)

    @property
    def unavailable_languages(self) -> Mapping[str, str]:
        """Languages of the model whose text front-end cannot run here, with the reason (not in
        `languages`; `start` refuses them with `UnsupportedLanguageError`)."""
        return self.model.unavailable_languages

    @property
    def n_timesteps(self) -> int:
        return self.model.flow_timesteps

    @property
    def device_name(self) -> str:
        return str(self.model.device)

    @property
    def stop_token(self) -> int:
        return int(self.model.t3.hp.stop_speech_token)

    @property
    def shares_flow_calls(self) -> bool:
        # Both decoders take several streams' rows in one call (`flow_mel`).
        return True

    def new_token_batch(self) -> TokenBatch:
        if self.model.variant is ModelVariant.TURBO:
            return TurboBatch(self.model.t3)
        return OriginalBatch(self.model.t3, alignment_checks=self._alignment_checks)

    def next_chunks_together(self, streams: list[BatchStream], count: int) -> list[AudioChunk]:
        return next_chunks_together(cast(list[StreamState], streams), count)

    def last_chunks_together(self, streams: list[BatchStream]) -> list[AudioChunk]:
        return last_chunks_together(cast(list[StreamState], streams))

    def stream(
        self, request: SynthesisRequest, cancel: threading.Event | None = None
    ) -> Generator[AudioChunk, None, None]:
        """Audio chunks as T3 generates; the last one has `is_last`, the final metrics and the
        stream's summary. Raises `Cancelled` soon after `cancel` is set."""
        state = self.start(request)
        for _ in self._generate(state, cancel):
            if state.chunk_due():
                yield state.next_chunk()
        yield state.last_chunk()

    def synthesize(
        self, request: SynthesisRequest, cancel: threading.Event | None = None
    ) -> SynthesisResult:
        """Regular synthesis: all tokens first, then one decoding pass (upstream `generate`)."""
        state = self.start(request, streaming=False)
        for _ in self._generate(state, cancel):
            pass
        return state.whole()

    def speech_tokens(self, request: SynthesisRequest) -> list[int]:
        state = self.start(request)
        for _ in self._generate(state, None):
            pass
        return state.raw_tokens

    def _generate(self, state: StreamState, cancel: threading.Event | None) -> Iterator[None]:
        """Runs T3 over every segment of `state`, one token at a time, alone on the device."""
        token_source = (
            turbo_speech_tokens
            if self.model.variant is ModelVariant.TURBO
            else functools.partial(original_speech_tokens, alignment_checks=self._alignment_checks)
        )
        while True:
            segment = state.next_segment()
            if segment is None:
                if not state.waiting_for_text():
                    return
                yield  # the caller sends what is generated so far, then we wait for text
                state.wait_for_text(cancel)
                continue
            for token in token_source(
                self.model.t3,
                segment.t3_cond,
                segment.text_tokens,
                state.request.params,
                segment.new_generator(),
                segment.cap,
            ):
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                state.accept(token)
                yield

    def start(self, request: SynthesisRequest, streaming: bool = True) -> StreamState:
        """A request's generation state, validated; T3 is then driven by the caller.

        Raises `UnsupportedLanguageError` for a language the model does not speak, or
        cannot here (`unavailable_languages`)."""
        self.model.check_language(request.language)
        voice = request.voice or self._builtin
        if voice is None:
            raise ValueError("this checkpoint has no built-in voice: an audio prompt is required")
        if not MIN_CHUNK_SIZE <= request.chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be {MIN_CHUNK_SIZE}-{MAX_CHUNK_SIZE}")
        segments = split_into_segments(request.text, self.config.max_segment_chars)
        if not segments and request.text_feed is None:
            raise ValueError("text is empty")
        return StreamState(
            self.model,
            self.config,
            request,
            segments,
            voice,
            streaming=streaming,
            watermarker=self._watermarker,
        )


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "SAMPLE_RATE",
    "AudioChunk",
    "Cancelled",
    "EngineConfig",
    "SpeechEngine",
    "StreamMetrics",
    "StreamSummary",
    "StreamingEngine",
    "SynthesisRequest",
    "SynthesisResult",
    "UnsupportedLanguageError",
]
