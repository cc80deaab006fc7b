"""One request's generation, driven token by token from outside.

T3 is run by whoever owns the device (the serial loop in `StreamingEngine`, or a batch of
streams); this object decides everything else: the text segments and their token caps, which
tokens S3Gen decodes, when a chunk is due, the chunk's audio, watermark and metrics.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from server.engine.conditionals import VoiceConditionals
from server.engine.loading import LoadedModel, ModelVariant
from server.engine.multilingual_text import (
    normalize_punctuation as normalize_multilingual_punctuation,
)
from server.engine.schema import (
    MODEL_MAX_TOKENS_PER_SEGMENT,
    SILENCE_TOKEN,
    SPEECH_VOCAB_SIZE,
    TRAILING_SILENCE_TOKENS,
    AudioChunk,
    Cancelled,
    EngineConfig,
    StreamMetrics,
    StreamSummary,
    SynthesisRequest,
    SynthesisResult,
)
from server.engine.text import default_token_cap, normalize_punctuation
from server.engine.token2wav import (
    FlowInput,
    NoiseTape,
    Token2WavStreamer,
    flow_mel_together,
)
from server.engine.types import SAMPLE_RATE, Audio
from server.engine.watermark import StreamWatermarker, mark_whole

# How often a serial stream waiting for text checks for cancellation (seconds).
TEXT_POLL_SECONDS = 0.05
# S3 tokens are 25 per second of audio.
SAMPLES_PER_TOKEN = SAMPLE_RATE // 25
# Silence tokens that cover the decoder's crossfade tail (3840 samples, 4 tokens).
PAUSE_COVER_TOKENS = 4


@dataclass(frozen=True)
class SegmentPlan:
    """What T3 needs for one sentence group of a stream."""

    index: int  # the segment's place in the stream
    text_tokens: torch.Tensor
    t3_cond: Any  # a fresh T3Cond (T3 caches the prompt embedding on it)
    cap: int  # at most this many tokens
    cond_key: tuple[str, float]  # equal keys, equal conditioning: (voice, exaggeration)
    seed: int
    device: torch.device

    def new_generator(self) -> torch.Generator:
        """The segment's own sampling generator: its tokens do not depend on when it is
        generated, or on how many tokens the segments before it drew (a segment generated
        ahead of its turn, or again after being set aside, gets the same tokens)."""
        return torch.Generator(device=self.device).manual_seed(self.seed)


def segment_seed(seed: int, index: int) -> int:
    """Segment `index`'s seed: the request's seed for the first (a one-segment request
    samples exactly as upstream does), distinct derived seeds for the others."""
    return (seed + index * _GOLDEN_GAMMA) & (2**63 - 1)


_GOLDEN_GAMMA = 0x9E3779B97F4A7C15  # spreads consecutive indices over the seed space


class StreamState:
    def __init__(
        self,
        model: LoadedModel,
        config: EngineConfig,
        request: SynthesisRequest,
        segments: list[str],
        voice: VoiceConditionals,
        *,
        streaming: bool,
        watermarker: Any | None,
    ):
        self.model = model
        self.config = config
        self.request = request
        self.segments = segments
        self.voice = voice
        self.seed = request.seed if request.seed is not None else _random_seed()
        self.tokens: list[int] = []  # what S3Gen decodes
        self.raw_tokens: list[int] = []  # what T3 produced
        self.cap_hit = False
        self._segment = -1
        self._segment_cap = 0
        self._segment_tokens = 0
        self._chunks = 0
        self._samples_sent = 0
        self._segment_starts: list[int] = []  # token index of each segment's first token
        self._plans: dict[int, SegmentPlan] = {}  # planned before their turn (`upcoming_segment`)
        self._tokens_finished = False  # the trailing silence is appended
        # Text-in streams: the text arrives while the stream runs (`TextFeed`).
        self._feed = request.text_feed
        self._waiting = False  # for text: nothing to generate until more arrives
        self._paused = False  # the pause's silence is in `tokens` already
        self._resumed_chunk = -1  # the chunk count when generation resumed after a pause
        self._watermarker = watermarker
        self._marker = StreamWatermarker(watermarker) if watermarker and streaming else None
        self._clock = _Clock(request.started_at or time.perf_counter())
        _, ref = voice.for_request(request.params.exaggeration, model.device, model.dtype)
        window = config.window_for(model.meanflow)
        self.streamer = Token2WavStreamer(
            model.s3gen,
            ref,
            # The flow's noise has its own generator so it does not depend on how many tokens
            # were sampled; both derive from the request seed for reproducibility.
            NoiseTape(self.seed + 1, model.device),
            meanflow=model.meanflow,
            n_timesteps=model.flow_timesteps,
            reference_tokens=window.reference_tokens if streaming else None,
            context_tokens=window.context_tokens,
        )

    # --- T3 side -------------------------------------------------------------------------

    def next_segment(self) -> SegmentPlan | None:
        """The next sentence group to generate, or None: the request is complete, or (see
        `waiting_for_text`) a text-in stream has no complete segment yet."""
        if self._segment >= 0 and self._segment_tokens >= self._segment_cap:
            self.cap_hit = True
        budget = self.request.max_new_tokens
        if budget is not None and len(self.raw_tokens) >= budget:
            self._waiting = False
            return None
        if self._segment + 1 >= len(self.segments) and not self._take_text():
            return None
        self._segment += 1
        if self._segment > 0 and not self._paused:
            # A short pause between sentence groups, as between upstream calls.
            self.tokens.extend([SILENCE_TOKEN] * TRAILING_SILENCE_TOKENS)
        if self._paused:
            self._paused, self._resumed_chunk = False, self._chunks
        self._segment_starts.append(len(self.tokens))
        plan = self._plans.pop(self._segment, None) or self._plan(self._segment)
        if budget is not None:
            plan = replace(plan, cap=min(plan.cap, budget - len(self.raw_tokens)))
        self._segment_cap, self._segment_tokens = plan.cap, 0
        return plan

    def upcoming_segment(self, ahead: int) -> SegmentPlan | None:
        """The segment `ahead` (>= 1) places after the current one, if its text is complete,
        for T3 to generate before its turn; `next_segment` gives the same plan when its turn
        comes. None also for a request with a token budget (its caps depend on the tokens
        of the segments before)."""
        if self.request.max_new_tokens is not None:
            return None
        index = self._segment + ahead
        if index >= len(self.segments):
            self._absorb_text()
            if index >= len(self.segments):
                return None
        if index not in self._plans:
            self._plans[index] = self._plan(index)
        return self._plans[index]

    def _plan(self, index: int) -> SegmentPlan:
        segment = self.segments[index]
        cap = default_token_cap(
            segment,
            MODEL_MAX_TOKENS_PER_SEGMENT,
            self.config.cap_tokens_per_char,
            self.config.cap_token_margin,
        )
        t3_cond, _ = self.voice.for_request(
            self.request.params.exaggeration, self.model.device, self.model.dtype
        )
        cond_key = (self.voice.key, self.request.params.exaggeration)
        return SegmentPlan(
            index,
            self._text_tokens(segment),
            t3_cond,
            cap,
            cond_key,
            segment_seed(self.seed, index),
            self.model.device,
        )

    def waiting_for_text(self) -> bool:
        """True after `next_segment` found no complete text yet (more is coming)."""
        return self._waiting

    def wait_for_text(self, cancel: threading.Event | None) -> None:
        """Block until the text feed changes; raises `Cancelled` once `cancel` is set."""
        assert self._feed is not None
        while not (cancel is not None and cancel.is_set()):
            if self._feed.ready():
                return
            self._feed.wait(TEXT_POLL_SECONDS)
        raise Cancelled()

    def _take_text(self) -> bool:
        """Move complete text from the feed into `segments`; True if there is some."""
        self._waiting = False
        if self._feed is None:
            return False
        before = len(self.segments)
        if not self._absorb_text():  # the text has ended
            return len(self.segments) > before
        if len(self.segments) > before:
            return True
        self._waiting = True  # more text is coming
        self._pause()
        return False

    def _absorb_text(self) -> bool:
        """Append the feed's complete segments to `segments`; False once the text has ended
        (or there is no feed)."""
        taken = self._feed.take() if self._feed is not None else None
        if taken:
            self.segments.extend(taken)
        return taken is not None

    def _pause(self) -> None:
        """While waiting for text, let everything generated so far be heard: the speech is
        followed by enough silence to cover what the decoder holds back (the flow's
        lookahead and the crossfade tail), so only silence waits for the next segment."""
        if self._paused or not self.tokens:
            return
        self._paused = True
        self.tokens.extend([SILENCE_TOKEN] * (TRAILING_SILENCE_TOKENS + PAUSE_COVER_TOKENS))

    def accept(self, token: int) -> None:
        self.raw_tokens.append(token)
        self._segment_tokens += 1
        if token < SPEECH_VOCAB_SIZE:
            self.tokens.append(token)

    # --- audio side ----------------------------------------------------------------------

    def hop(self) -> int:
        """Tokens the next chunk waits for: few for a stream's first audio, and again after
        a pause for text (the listener's buffer has run dry)."""
        first = self.request.first_chunk_tokens or self.config.first_chunk_tokens
        starting = self._chunks == 0 or self._chunks == self._resumed_chunk
        return first if starting else self.request.chunk_size

    def pending_tokens(self) -> int:
        """Tokens a chunk made now would turn into audio."""
        return self.streamer.pending_tokens(len(self.tokens), finalize=False)

    def prompt_tokens(self) -> int:
        """The flow prompt's length: chunks of streams with equal lengths can share a call."""
        return self.streamer.prompt_tokens()

    def chunk_due(self) -> bool:
        pending = self.pending_tokens()
        return pending >= self.hop() or (self._waiting and pending > 0)

    def chunk_flow_input(self, count: int) -> FlowInput:
        """The flow's input for a next chunk of `count` (at most `pending_tokens()`) tokens."""
        end = self.streamer.emitted_tokens + count + self.streamer.lookahead_tokens
        return self.streamer.flow_input(self._token_tensor()[:end])

    def buffered_seconds(self, now: float | None = None) -> float:
        """Audio sent but not yet played (if playback started with the first chunk)."""
        return self._clock.buffered(now or time.perf_counter())

    def next_chunk(self, mel: torch.Tensor | None = None) -> AudioChunk:
        """The next chunk. `mel`: the flow's frames for `chunk_flow_input(...)`, when they
        were computed together with other streams' (None: computed here)."""
        if mel is None:
            wav = self.streamer.decode(self._token_tensor(), finalize=False)
        else:
            wav = self.streamer.continue_with(mel, finalize=False)
        audio = _np(wav)
        if self._marker is not None:
            audio = self._marker.mark(audio, _np(self.streamer.held_back))
        self._chunks += 1
        return AudioChunk(
            self._chunks,
            audio,
            self._clock.metrics(audio.size, self._chunks),
            segment_starts=self._starts_within(audio.size),
        )

    def last_chunk_tokens(self) -> int:
        """Tokens the last chunk's flow call will take (0: none, only held-back audio)."""
        trailing = 0 if self._tokens_finished else _trailing_tokens(self.model)
        return len(self.tokens) + trailing - self.streamer.emitted_tokens

    def last_flow_input(self) -> FlowInput:
        """The flow's input for the last chunk (when `last_chunk_tokens()` > 0)."""
        self._finish_tokens()
        return self.streamer.flow_input(self._token_tensor())

    def last_chunk(self, mel: torch.Tensor | None = None) -> AudioChunk:
        """The last chunk; `mel` as for `next_chunk`, for `last_flow_input()`."""
        self._finish_tokens()
        if mel is None:
            wav = self.streamer.decode(self._token_tensor(), finalize=True)
        else:
            wav = self.streamer.continue_with(mel, finalize=True)
        audio = _np(wav)
        if self._marker is not None:
            audio = self._marker.mark(audio, None)
        self._chunks += 1
        return AudioChunk(
            self._chunks,
            audio,
            self._clock.metrics(audio.size, self._chunks),
            is_last=True,
            summary=self.summary(),
            segment_starts=self._starts_within(audio.size),
        )

    def _starts_within(self, samples: int) -> tuple[int, ...]:
        """Segment starts (in samples) that fall in the next `samples` of audio. A token is
        `SAMPLES_PER_TOKEN` samples of output wherever it is (chunking never shifts audio)."""
        begin, self._samples_sent = self._samples_sent, self._samples_sent + samples
        starts = (t * SAMPLES_PER_TOKEN for t in self._segment_starts)
        return tuple(s for s in starts if begin <= s < self._samples_sent)

    def whole(self) -> SynthesisResult:
        """Regular synthesis: everything decoded at once."""
        self._finish_tokens()
        audio = _np(self.streamer.decode_offline(self._token_tensor()))
        if self._watermarker is not None:
            audio = mark_whole(self._watermarker, audio)
        return SynthesisResult(audio, self._clock.metrics(audio.size, 1), self.summary())

    def summary(self) -> StreamSummary:
        return StreamSummary(list(self.raw_tokens), self.cap_hit, len(self.segments), self.seed)

    def _finish_tokens(self) -> None:
        if self._tokens_finished:
            return
        self._tokens_finished = True
        if self._segment_tokens >= self._segment_cap > 0:
            self.cap_hit = True
        self.tokens.extend([SILENCE_TOKEN] * _trailing_tokens(self.model))

    def _token_tensor(self) -> torch.Tensor:
        return torch.tensor(self.tokens, dtype=torch.long, device=self.model.device)

    def _text_tokens(self, segment: str) -> torch.Tensor:
        if self.model.variant is ModelVariant.MULTILINGUAL:
            text = normalize_multilingual_punctuation(segment)
        else:
            text = normalize_punctuation(segment)
        tokens = self.model.text_to_tokens(text, self.request.language)
        if self.model.guided:
            t3 = self.model.t3
            tokens = torch.nn.functional.pad(tokens, (1, 0), value=t3.hp.start_text_token)
            tokens = torch.nn.functional.pad(tokens, (0, 1), value=t3.hp.stop_text_token)
        return tokens


def next_chunks_together(states: list[StreamState], count: int) -> list[AudioChunk]:
    """The next chunk of `count` tokens of each stream, with one batched flow call.

    For streams whose `chunk_flow_input(count)` have equal shapes (the same prompt length),
    with either decoder. On our CPU, 4 first chunks of Turbo took 1.32 s together against
    4 x 0.47 s one by one; the flow-matching decoder's estimator, 4 streams of 60 frames,
    0.48 s a step together against 4 x 0.15 s (of 226 frames: 1.84 s against 4 x 0.53 s).
    The vocoder still runs per stream (its noise is per stream).
    """
    inputs = [state.chunk_flow_input(count) for state in states]
    mels = _flow_together(states[0].model, inputs, finalize=False)
    return [state.next_chunk(mel) for state, mel in zip(states, mels, strict=True)]


def last_chunks_together(states: list[StreamState]) -> list[AudioChunk]:
    """Each stream's last chunk, with one batched flow call (equal `last_chunk_tokens()` and
    prompt lengths, as for `next_chunks_together`)."""
    inputs = [state.last_flow_input() for state in states]
    mels = _flow_together(states[0].model, inputs, finalize=True)
    return [state.last_chunk(mel) for state, mel in zip(states, mels, strict=True)]


def _flow_together(
    model: LoadedModel, inputs: list[FlowInput], *, finalize: bool
) -> list[torch.Tensor]:
    return flow_mel_together(
        model.s3gen,
        inputs,
        finalize=finalize,
        n_timesteps=model.flow_timesteps,
        meanflow=model.meanflow,
    )


def _trailing_tokens(model: LoadedModel) -> int:
    # Upstream Turbo appends a little silence before decoding; the original model does not.
    return TRAILING_SILENCE_TOKENS if model.variant is ModelVariant.TURBO else 0


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

    def buffered(self, now: float) -> float:
        if self.first_chunk is None:
            return 0.0
        played = now - self.started - self.first_chunk
        return self.audio_samples / SAMPLE_RATE - max(0.0, played)


def _np(audio: torch.Tensor | None) -> Audio:
    if audio is None:
        return np.zeros(0, dtype=np.float32)
    return audio.detach().to("cpu", torch.float32).numpy()


def _random_seed() -> int:
    return int(torch.randint(0, 2**31 - 1, (1,)).item())
