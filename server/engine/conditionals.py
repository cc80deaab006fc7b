"""Voice conditionals: from an audio prompt, cached by content, never shared mutably.

Upstream mutates the conditionals it is given (`T3.prepare_conditioning` stores the prompt
embedding on the `T3Cond`; `S3Token2Mel.forward` re-casts `ref_dict` in place), so every
request works on its own shallow copies of the cached tensors.
"""

from __future__ import annotations

import hashlib
import io
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from server.engine.loading import LoadedModel, ModelVariant
from server.engine.types import SAMPLE_RATE as S3GEN_SR
from server.engine.types import Audio

S3_SR = 16000
MIN_PROMPT_SECONDS = 5.0
# Upstream tokenises the first 15 s (Turbo) or 6 s (original, multilingual: their 150 prompt
# tokens) of the prompt for T3, and gives S3Gen the first 10 s; more is never used. The cut
# matters beyond its length: the tokenizer's mel is clamped relative to the clip's loudest frame.
ENC_COND_SECONDS = {
    ModelVariant.TURBO: 15,
    ModelVariant.ORIGINAL: 6,
    ModelVariant.MULTILINGUAL: 6,
}
DEC_COND_SECONDS = 10
TURBO_TARGET_LUFS = -27.0
# What an audio prompt may be, checked before its samples are decoded: a file is a few
# megabytes, but its header may claim any rate and a compressed file (FLAC of silence) can
# decode to hours. Telephone audio is 8 kHz; studio files go up to 192 kHz; 7.1 is 8 channels.
MIN_PROMPT_SAMPLE_RATE = 8000
MAX_PROMPT_SAMPLE_RATE = 192000
MAX_PROMPT_CHANNELS = 8
# The longest prompt decoded when the caller sets no limit of its own.
DEFAULT_MAX_PROMPT_SECONDS = 60.0
# Frames decoded at a time (each downmixed at once): the whole file is never held in all its
# channels.
DECODE_BLOCK_FRAMES = 1 << 16


class AudioPromptError(ValueError):
    """The audio prompt cannot be used; the message is meant for the client."""


@dataclass(frozen=True)
class VoiceConditionals:
    """A voice, ready for any request: the T3 conditioning and the S3Gen reference."""

    t3: Any  # chatterbox T3Cond
    gen: dict[str, Any]
    key: str  # content hash of the prompt audio, or "builtin"

    def for_request(
        self, exaggeration: float, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> tuple[Any, dict[str, Any]]:
        """The T3 conditioning in T3's `dtype`, and the S3Gen reference (float32, as stored:
        the token-to-wave streamer casts it to the flow's dtype)."""
        from chatterbox.models.t3.modules.cond_enc import T3Cond

        t3 = T3Cond(
            speaker_emb=_as_float(self.t3.speaker_emb, dtype),
            clap_emb=_as_float(self.t3.clap_emb, dtype),
            cond_prompt_speech_tokens=self.t3.cond_prompt_speech_tokens,
            cond_prompt_speech_emb=_as_float(self.t3.cond_prompt_speech_emb, dtype),
            emotion_adv=exaggeration * torch.ones(1, 1, 1, device=device, dtype=dtype),
        )
        return t3, dict(self.gen)


def _as_float(value: Any, dtype: torch.dtype) -> Any:
    if torch.is_tensor(value) and value.is_floating_point():
        return value.to(dtype)
    return value


def save_conditionals(voice: VoiceConditionals, path: Path) -> None:
    """Write a voice to `path` (a torch file of plain tensors: loads with weights_only)."""
    t3 = {k: v.cpu() if torch.is_tensor(v) else v for k, v in vars(voice.t3).items()}
    t3["cond_prompt_speech_emb"] = None  # derived from the tokens on use
    gen = {k: v.cpu() if torch.is_tensor(v) else v for k, v in voice.gen.items()}
    torch.save({"t3": t3, "gen": gen, "key": voice.key}, path)


def load_conditionals(path: Path, device: torch.device) -> VoiceConditionals:
    """A voice written by `save_conditionals`, on `device`."""
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    payload = torch.load(path, map_location=device, weights_only=True)
    return VoiceConditionals(T3Cond(**payload["t3"]), dict(payload["gen"]), payload["key"])


def builtin_voice(model: LoadedModel) -> VoiceConditionals | None:
    if model.builtin_conds is None:
        return None
    return VoiceConditionals(model.builtin_conds.t3, dict(model.builtin_conds.gen), "builtin")


def decode_audio(data: bytes, max_seconds: float | None = None) -> Audio:
    """Mono float32 samples at 24 kHz from an audio file's bytes (WAV, FLAC, OGG, MP3, ...).

    Whatever its header claims, no more than `max_seconds` (and one frame) of the file is
    decoded, in blocks, so memory and time stay bounded by the limit, not by the file."""
    import librosa
    import soundfile

    if not data:
        raise AudioPromptError("audio prompt is empty")
    limit = DEFAULT_MAX_PROMPT_SECONDS if max_seconds is None else max_seconds
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as file:
            sample_rate = _check_layout(file.samplerate, file.channels)
            mono = _read_mono(file, max_frames=math.floor(limit * sample_rate) + 1)
    except AudioPromptError:
        raise
    except Exception as exc:  # soundfile raises several types for garbage input
        raise AudioPromptError(f"audio prompt could not be decoded as audio ({exc})") from None
    if mono.shape[0] > limit * sample_rate:
        raise AudioPromptError(
            f"audio prompt is longer than {limit:g} s; at most {limit:g} s is accepted"
        )
    if not np.all(np.isfinite(mono)):
        raise AudioPromptError("audio prompt contains invalid samples")
    if sample_rate != S3GEN_SR:
        mono = librosa.resample(mono, orig_sr=sample_rate, target_sr=S3GEN_SR)
    duration = mono.shape[0] / S3GEN_SR
    if duration < MIN_PROMPT_SECONDS:
        raise AudioPromptError(
            f"audio prompt is {duration:.1f} s long; "
            f"it must be longer than {MIN_PROMPT_SECONDS:g} s"
        )
    return np.ascontiguousarray(mono, dtype=np.float32)


def _check_layout(sample_rate: int, channels: int) -> int:
    if not MIN_PROMPT_SAMPLE_RATE <= sample_rate <= MAX_PROMPT_SAMPLE_RATE:
        raise AudioPromptError(
            f"audio prompt's sample rate is {sample_rate} Hz; "
            f"{MIN_PROMPT_SAMPLE_RATE}-{MAX_PROMPT_SAMPLE_RATE} Hz is accepted"
        )
    if not 1 <= channels <= MAX_PROMPT_CHANNELS:
        raise AudioPromptError(
            f"audio prompt has {channels} channels; at most {MAX_PROMPT_CHANNELS} are accepted"
        )
    return sample_rate


def _read_mono(file: Any, max_frames: int) -> Audio:
    """Up to `max_frames` frames of an open `soundfile.SoundFile`, averaged to mono."""
    blocks: list[Audio] = []
    read = 0
    while read < max_frames:
        block = file.read(
            min(DECODE_BLOCK_FRAMES, max_frames - read), dtype="float32", always_2d=True
        )
        if not len(block):
            break
        blocks.append(block.mean(axis=1))
        read += len(block)
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def _normalize_loudness(wav: Audio) -> Audio:
    # Upstream Turbo's norm_loudness: silence or failures leave the audio as it is.
    import pyloudnorm  # type: ignore[import-untyped]

    try:
        loudness = pyloudnorm.Meter(S3GEN_SR).integrated_loudness(wav)
        gain = 10.0 ** ((TURBO_TARGET_LUFS - loudness) / 20.0)
    except Exception:
        return wav
    if not (math.isfinite(gain) and gain > 0.0):
        return wav
    # A float32 gain: numpy 2 would promote the audio to float64 for a float64 scalar (numpy 1
    # kept float32), and the speech tokenizer refuses float64 input.
    return wav * np.float32(gain)


def s3gen_reference(s3gen: Any, wav_24k: Audio, device: torch.device) -> dict[str, Any]:
    """Upstream `S3Token2Mel.embed_ref` for a 24 kHz prompt, in float32 whatever the flow's
    dtype: upstream casts the audio to the flow's dtype before the mel features and the
    speaker encoder, which stay float32 here (loading.py's `set_dtypes`). The same values as
    upstream's in float32; a voice's reference does not depend on `--dtype`."""
    from chatterbox.models.s3gen.s3gen import get_resampler

    wav = torch.from_numpy(np.ascontiguousarray(wav_24k)).float().to(device)[None]
    mel = s3gen.mel_extractor(wav).transpose(1, 2)
    wav_16k = get_resampler(S3GEN_SR, S3_SR, device)(wav)
    embedding = s3gen.speaker_encoder.inference(wav_16k)
    tokens, token_lens = s3gen.tokenizer(wav_16k.float())
    if mel.shape[1] != 2 * tokens.shape[1]:
        # As upstream: a prompt not a whole number of 40 ms frames long has a token too many.
        tokens = tokens[:, : mel.shape[1] // 2]
        token_lens[0] = tokens.shape[1]
    return {
        "prompt_token": tokens.to(device),
        "prompt_token_len": token_lens,
        "prompt_feat": mel,
        "prompt_feat_len": None,
        "embedding": embedding,
    }


@torch.inference_mode()
def conditionals_from_audio(
    model: LoadedModel, wav_24k: Audio, key: str, exaggeration: float = 0.5
) -> VoiceConditionals:
    """What upstream `prepare_conditionals` computes, without touching the model's state."""
    import librosa
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    if model.variant is ModelVariant.TURBO:
        wav_24k = _normalize_loudness(wav_24k)
    ref_16k = librosa.resample(wav_24k, orig_sr=S3GEN_SR, target_sr=S3_SR)
    gen = s3gen_reference(model.s3gen, wav_24k[: DEC_COND_SECONDS * S3GEN_SR], model.device)
    prompt_tokens = None
    if plen := model.t3.hp.speech_cond_prompt_len:
        prompt_tokens, _ = model.s3gen.tokenizer.forward(
            [ref_16k[: ENC_COND_SECONDS[model.variant] * S3_SR]], max_len=plen
        )
        prompt_tokens = prompt_tokens.reshape(1, -1).to(model.device)
    ve_embed = torch.from_numpy(model.voice_encoder.embeds_from_wavs([ref_16k], sample_rate=S3_SR))
    ve_embed = ve_embed.mean(dim=0, keepdim=True).to(model.device)
    t3 = T3Cond(
        speaker_emb=ve_embed,
        cond_prompt_speech_tokens=prompt_tokens,
        emotion_adv=exaggeration * torch.ones(1, 1, 1),
    ).to(device=model.device)
    return VoiceConditionals(t3, gen, key)


def audio_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ConditionalsCache:
    """LRU of voices by the hash of their prompt audio: a repeated prompt costs a hash."""

    def __init__(self, model: LoadedModel, capacity: int = 64, max_prompt_seconds: float = 60.0):
        self._model = model
        self._capacity = capacity
        self._max_prompt_seconds = max_prompt_seconds
        self._entries: OrderedDict[str, VoiceConditionals] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, audio_bytes: bytes) -> VoiceConditionals:
        key = audio_key(audio_bytes)
        cached = self.lookup(key)
        if cached is not None:
            return cached
        return self.from_decoded(key, self.decode(audio_bytes))

    def decode(self, audio_bytes: bytes) -> Audio:
        """Decode and validate (no model work: safe on any thread)."""
        return decode_audio(audio_bytes, self._max_prompt_seconds)

    def lookup(self, key: str) -> VoiceConditionals | None:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        return None

    def from_decoded(self, key: str, wav: Audio) -> VoiceConditionals:
        """Compute (on the model's thread) and remember the voice of a decoded prompt."""
        voice = self.lookup(key) or conditionals_from_audio(self._model, wav, key)
        with self._lock:
            self._entries[key] = voice
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return voice

    def __len__(self) -> int:
        return len(self._entries)
