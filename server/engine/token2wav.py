"""Incremental speech-token to waveform conversion (S3Gen flow + HiFT), without seams.

Each chunk runs the flow over a *prompt* followed by the tokens not yet turned into audio, and
holds back the mel frames of the last `pre_lookahead_len` tokens, whose lookahead is not known
yet. The prompt is the tail of the voice prompt followed by the last `context_tokens` tokens
already emitted, *with the mel frames that were emitted for them*: the flow treats prompt frames
as given and continues them, so every chunk starts exactly where the previous one ended, and the
cost of a chunk no longer grows with the length of the utterance (re-running the flow over all
tokens so far, as CosyVoice2 does, costs the whole voice prompt plus everything said so far on
every chunk: several times the offline cost on a CPU).

The vocoder joins follow CosyVoice2's streaming `token2wav`: HiFT gets the last few mel frames of
the previous call again plus the harmonic source it produced for them (`cache_source`), so its
phase runs on; the audio of those frames is crossfaded with the tail held back from the previous
call, and the new tail is held back in turn. The final call holds nothing back.

The flow's starting noise comes from a per-request `NoiseTape` indexed by absolute frame, so a
frame sees the same noise however the utterance is cut into chunks; upstream's start trim/fade is
applied to the first chunk only (upstream applies it to every call's output).

Dtypes: the flow computes in its own dtype (float32, or 16-bit under `--dtype`: loading.py), and
everything given to it (reference mel, speaker embedding, noise, drawn in float32 on the CPU) is
cast to it; its mel frames are cast to the vocoder's dtype (float32) before HiFT.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

MEL_FRAMES_PER_TOKEN = 2
SAMPLES_PER_MEL_FRAME = 480  # 24 kHz / 50 Hz mel frame rate
VOCODER_CACHE_FRAMES = 8
VOCODER_CACHE_SAMPLES = VOCODER_CACHE_FRAMES * SAMPLES_PER_MEL_FRAME
NOISE_BLOCK_FRAMES = 1024
# Offline decoding of very long utterances proceeds in windows of this many tokens (upstream's
# own per-call limit), continued like streaming chunks.
OFFLINE_WINDOW_TOKENS = 1000


class NoiseTape:
    """Gaussian noise for mel frames 0, 1, 2, ... that is the same however it is sliced.

    Drawn block by block from its own generator, so frame f always gets the same values no
    matter how long the utterance turns out or in how many calls it is decoded.
    """

    def __init__(self, seed: int, device: torch.device, dtype: torch.dtype = torch.float32):
        self.seed = seed
        self._generator = torch.Generator(device="cpu").manual_seed(seed)
        self._device = device
        self._dtype = dtype
        self._frames = torch.empty(1, 80, 0)

    def frames(self, start: int, stop: int) -> torch.Tensor:
        while self._frames.shape[2] < stop:
            block = torch.randn(1, 80, NOISE_BLOCK_FRAMES, generator=self._generator)
            self._frames = torch.cat([self._frames, block], dim=2)
        return self._frames[:, :, start:stop].to(device=self._device, dtype=self._dtype)


@dataclass(frozen=True)
class FlowPrompt:
    """What the flow continues from: speech tokens and the mel frames that go with them."""

    tokens: torch.Tensor  # (1, n) long
    mel: torch.Tensor  # (1, 2n, 80)
    noise: torch.Tensor  # (1, 80, 2n)


@dataclass(frozen=True)
class FlowInput:
    """One flow call's inputs for one stream: new tokens (1, n), their noise, what they
    continue from and the speaker."""

    prompt: FlowPrompt
    speaker: torch.Tensor
    tokens: torch.Tensor
    noise: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        """Inputs with equal shapes can share one batched flow call."""
        return self.prompt.tokens.shape[1], self.tokens.shape[1]


@torch.inference_mode()
def flow_mel(
    s3gen: Any,
    prompt: FlowPrompt,
    speaker: torch.Tensor,
    tokens: torch.Tensor,
    noise: torch.Tensor,
    *,
    finalize: bool,
    n_timesteps: int,
    meanflow: bool,
) -> torch.Tensor:
    """Mel frames (B, 80, T) for `tokens` (B, n), continuing `prompt` (B rows of equal length).

    The computation of upstream `CausalMaskedDiffWithXvec.inference` plus
    `CausalConditionalCFM.forward`, except that (a) the starting noise is given (`noise` for the
    new frames, the prompt's own for its frames), and (b) `finalize=False` works: upstream 0.1.7
    truncates `h` but not its mask and crashes with a size mismatch. Several streams' rows can
    go through at once with either decoder: the flow-matching decoder's guidance doubles the
    batch (B conditioned rows, then B unconditioned ones), so each row is guided by its own.
    """
    from chatterbox.models.s3gen.utils.mask import make_pad_mask

    flow = s3gen.flow
    dtype = s3gen.dtype
    rows = tokens.shape[0]
    spks = flow.spk_embed_affine_layer(F.normalize(speaker.reshape(rows, -1).to(dtype), dim=1))
    token = torch.cat([prompt.tokens, tokens.to(torch.long)], dim=1)
    token_len = torch.full((rows,), token.shape[1], device=token.device)
    mask = (~make_pad_mask(token_len)).unsqueeze(-1).to(spks)
    h, _ = flow.encoder(flow.input_embedding(token) * mask, token_len)
    if not finalize:
        h = h[:, : -flow.pre_lookahead_len * flow.token_mel_ratio]
    prompt_frames = prompt.mel.shape[1]
    total_frames = h.shape[1]
    mu = flow.encoder_proj(h).transpose(1, 2).contiguous()

    cond = torch.zeros(rows, flow.output_size, total_frames, device=mu.device, dtype=mu.dtype)
    cond[:, :, :prompt_frames] = prompt.mel.transpose(1, 2).to(mu.dtype)
    frame_mask = torch.ones(rows, 1, total_frames, device=mu.device, dtype=mu.dtype)
    z = torch.cat([prompt.noise, noise[:, :, : total_frames - prompt_frames]], dim=2).to(mu)

    decoder = flow.decoder
    # The time steps in float32, then the flow's dtype: the same as upstream's in float32,
    # and in 16 bits the cosine schedule is rounded once instead of at every operation.
    t_span = torch.linspace(0, 1, n_timesteps + 1, device=mu.device)
    if not meanflow and decoder.t_scheduler == "cosine":
        t_span = 1 - torch.cos(t_span * 0.5 * torch.pi)
    t_span = t_span.to(mu.dtype)
    if meanflow:
        mel = _meanflow_euler(decoder.estimator, z, t_span, mu, frame_mask, spks, cond)
    else:
        mel = decoder.solve_euler(
            z, t_span=t_span, mu=mu, mask=frame_mask, spks=spks, cond=cond, meanflow=False
        )
    return mel[:, :, prompt_frames:]


def flow_mel_together(
    s3gen: Any, inputs: list[FlowInput], *, finalize: bool, n_timesteps: int, meanflow: bool
) -> list[torch.Tensor]:
    """`flow_mel` for several streams' chunks of equal shape, in one batched call; each
    stream's mel frames (1, 80, T), equal to its own call's up to summation order."""
    if len({i.shape for i in inputs}) != 1:
        raise ValueError("flow inputs of different shapes")
    mel = flow_mel(
        s3gen,
        FlowPrompt(
            tokens=torch.cat([i.prompt.tokens for i in inputs]),
            mel=torch.cat([i.prompt.mel for i in inputs]),
            noise=torch.cat([i.prompt.noise for i in inputs]),
        ),
        torch.cat([i.speaker.reshape(1, -1) for i in inputs]),
        torch.cat([i.tokens for i in inputs]),
        torch.cat([i.noise for i in inputs]),
        finalize=finalize,
        n_timesteps=n_timesteps,
        meanflow=meanflow,
    )
    return [mel[row : row + 1] for row in range(mel.shape[0])]


def _meanflow_euler(
    estimator: Any,
    x: torch.Tensor,
    t_span: torch.Tensor,
    mu: torch.Tensor,
    mask: torch.Tensor,
    spks: torch.Tensor,
    cond: torch.Tensor,
) -> torch.Tensor:
    # Upstream's `basic_euler` without its per-call print and progress bar.
    for t, r in itertools.pairwise(t_span):
        t_, r_ = t[None], r[None]
        dxdt = estimator.forward(x, mask=mask, mu=mu, t=t_, spks=spks, cond=cond, r=r_)
        x = x + (r_ - t_) * dxdt
    return x


@contextlib.contextmanager
def _seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run with the global generators seeded, restoring them afterwards."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _crossfade_windows(length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Raised-cosine pair summing to exactly one: the two renderings being joined are nearly
    # identical (the same mel frames), so an equal-gain fade keeps the level constant.
    phase = torch.linspace(0.0, math.pi / 2, length, device=device)
    return torch.sin(phase) ** 2, torch.cos(phase) ** 2


class Token2WavStreamer:
    """Turns a growing speech-token sequence into consecutive, seamless audio pieces."""

    def __init__(
        self,
        s3gen: Any,
        ref: dict[str, Any],
        noise: NoiseTape,
        *,
        meanflow: bool,
        n_timesteps: int,
        reference_tokens: int | None = None,
        context_tokens: int = 50,
    ):
        """`reference_tokens`: how much of the voice prompt's end the flow sees (None: all of
        it, as upstream); `context_tokens`: emitted tokens carried into the next chunk."""
        self.s3gen = s3gen
        self.noise = noise
        self.meanflow = meanflow
        self.n_timesteps = n_timesteps
        self.context_tokens = context_tokens
        device = s3gen.device
        ref_tokens = ref["prompt_token"].to(device=device, dtype=torch.long).reshape(1, -1)
        ref_mel = ref["prompt_feat"].to(device=device, dtype=s3gen.dtype)
        ref_count = ref_tokens.shape[1]
        # Generated frame f has noise frame `noise_base + f`: the numbering offline decoding
        # with the whole voice prompt uses, so both see the same noise.
        self._noise_base = ref_count * MEL_FRAMES_PER_TOKEN
        keep = ref_count if reference_tokens is None else min(reference_tokens, ref_count)
        first_frame = (ref_count - keep) * MEL_FRAMES_PER_TOKEN
        self._reference = FlowPrompt(
            tokens=ref_tokens[:, ref_count - keep :],
            mel=ref_mel[:, first_frame:],
            noise=noise.frames(first_frame, self._noise_base),
        )
        self._speaker = ref["embedding"].to(device)
        self._emitted_tokens = 0
        # The flow's last frames, in its dtype: the next chunk's prompt.
        self._recent_mel = torch.zeros(1, 0, 80, device=device, dtype=s3gen.dtype)
        self._vocoder_dtype = next(s3gen.mel2wav.parameters()).dtype
        self._vocoder_mel_cache: torch.Tensor | None = None
        self._vocoder_source_cache: torch.Tensor | None = None
        self._held_back: torch.Tensor | None = None
        self._finished = False
        self.flow_calls = 0
        self._vocoder_calls = 0

    @property
    def lookahead_tokens(self) -> int:
        return int(self.s3gen.flow.pre_lookahead_len)

    @property
    def emitted_tokens(self) -> int:
        return self._emitted_tokens

    def prompt_tokens(self) -> int:
        """Length of the next flow call's prompt (voice prompt tail + context)."""
        context = min(self.context_tokens, self._emitted_tokens)
        return int(self._reference.tokens.shape[1]) + context

    @property
    def held_back(self) -> torch.Tensor | None:
        """Provisional audio after the last chunk, replaced (crossfaded) by the next one."""
        return self._held_back

    def pending_tokens(self, token_count: int, finalize: bool) -> int:
        """Tokens whose audio the next `decode` would emit."""
        usable = token_count if finalize else token_count - self.lookahead_tokens
        return max(0, usable - self._emitted_tokens)

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor, *, finalize: bool) -> torch.Tensor:
        """New final audio (1-D float tensor at 24 kHz) for `tokens` (1-D, all tokens so far)."""
        if self._finished:
            raise RuntimeError("decode() after the final chunk")
        if self.pending_tokens(tokens.shape[0], finalize) == 0:
            if not finalize:
                return torch.zeros(0, device=tokens.device)
            if self._vocoder_mel_cache is None:  # an empty utterance
                self._finished = True
                return torch.zeros(0, device=tokens.device)
        if tokens.shape[0] == self._emitted_tokens:  # finishing: only the held-back tail
            return self._vocode(self._recent_mel[:, :0].transpose(1, 2), finalize=True)
        flow_input = self.flow_input(tokens)
        mel = flow_mel(
            self.s3gen,
            flow_input.prompt,
            flow_input.speaker,
            flow_input.tokens,
            flow_input.noise,
            finalize=finalize,
            n_timesteps=self.n_timesteps,
            meanflow=self.meanflow,
        )
        return self.continue_with(mel, finalize=finalize)

    def flow_input(self, tokens: torch.Tensor) -> FlowInput:
        """What the flow needs for the next chunk, `tokens` being all tokens so far."""
        return FlowInput(
            self._prompt(tokens),
            self._speaker,
            tokens[self._emitted_tokens :].unsqueeze(0),
            self._noise_for(self._emitted_tokens, tokens.shape[0]),
        )

    @torch.inference_mode()
    def continue_with(self, mel: torch.Tensor, *, finalize: bool) -> torch.Tensor:
        """The chunk's audio from the flow's mel frames for `flow_input(...)`."""
        self.flow_calls += 1
        self._remember(mel)
        return self._vocode(mel, finalize=finalize)

    def decode_offline(self, tokens: torch.Tensor) -> torch.Tensor:
        """The whole utterance at once (windowed beyond upstream's per-call limit)."""
        pieces = []
        while (
            tokens.shape[0] - self._emitted_tokens > OFFLINE_WINDOW_TOKENS + self.lookahead_tokens
        ):
            end = self._emitted_tokens + OFFLINE_WINDOW_TOKENS + self.lookahead_tokens
            pieces.append(self.decode(tokens[:end], finalize=False))
        pieces.append(self.decode(tokens, finalize=True))
        return torch.cat(pieces)

    def _prompt(self, tokens: torch.Tensor) -> FlowPrompt:
        start = max(0, self._emitted_tokens - self.context_tokens)
        if start == self._emitted_tokens:
            return self._reference
        context = tokens[start : self._emitted_tokens].unsqueeze(0)
        frames = (self._emitted_tokens - start) * MEL_FRAMES_PER_TOKEN
        return FlowPrompt(
            tokens=torch.cat([self._reference.tokens, context], dim=1),
            mel=torch.cat([self._reference.mel, self._recent_mel[:, -frames:]], dim=1),
            noise=torch.cat(
                [self._reference.noise, self._noise_for(start, self._emitted_tokens)], dim=2
            ),
        )

    def _noise_for(self, first_token: int, end_token: int) -> torch.Tensor:
        base = self._noise_base
        return self.noise.frames(
            base + first_token * MEL_FRAMES_PER_TOKEN, base + end_token * MEL_FRAMES_PER_TOKEN
        )

    def _remember(self, mel: torch.Tensor) -> None:
        self._emitted_tokens += mel.shape[2] // MEL_FRAMES_PER_TOKEN
        keep = self.context_tokens * MEL_FRAMES_PER_TOKEN
        recent = torch.cat([self._recent_mel, mel.transpose(1, 2)], dim=1)
        self._recent_mel = recent[:, -keep:] if keep else recent[:, :0]

    def _vocode(self, new_mel: torch.Tensor, *, finalize: bool) -> torch.Tensor:
        hift = self.s3gen.mel2wav
        new_mel = new_mel.to(self._vocoder_dtype)
        first = self._vocoder_mel_cache is None
        if first:
            speech_feat = new_mel
            cache_source = torch.zeros(1, 1, 0, device=new_mel.device, dtype=new_mel.dtype)
        else:
            assert self._vocoder_mel_cache is not None and self._vocoder_source_cache is not None
            speech_feat = torch.cat([self._vocoder_mel_cache, new_mel], dim=2)
            cache_source = self._vocoder_source_cache
        # HiFT draws its excitation noise from the global generator: seeded per call from the
        # request's seed, a stream's audio never depends on what else ran on the device.
        with _seeded_global_rng(self.noise.seed * 1_000_003 + self._vocoder_calls, new_mel.device):
            batch_wav, source = hift.inference(speech_feat=speech_feat, cache_source=cache_source)
        self._vocoder_calls += 1
        wav: torch.Tensor = batch_wav[0]
        if first:
            # Upstream's trim/fade against spill-over from the voice prompt: first chunk only.
            trim = self.s3gen.trim_fade
            n = min(trim.shape[0], wav.shape[0])
            wav[:n] = wav[:n] * trim[:n]
        else:
            assert self._held_back is not None
            overlap = min(self._held_back.shape[0], wav.shape[0])
            fade_in, fade_out = _crossfade_windows(overlap, wav.device)
            wav[:overlap] = wav[:overlap] * fade_in + self._held_back[-overlap:] * fade_out
        if finalize:
            self._finished = True
            return wav
        keep_frames = min(VOCODER_CACHE_FRAMES, speech_feat.shape[2])
        keep_samples = keep_frames * SAMPLES_PER_MEL_FRAME
        self._vocoder_mel_cache = speech_feat[:, :, -keep_frames:]
        self._vocoder_source_cache = source[:, :, -keep_samples:]
        self._held_back = wav[-keep_samples:].clone()
        return wav[:-keep_samples]
