"""Audio prompt decoding and validation (no model needed)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from server.engine.conditionals import AudioPromptError, decode_audio


def _encoded(seconds: float, sample_rate: int = 16000, fmt: str = "WAV") -> bytes:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wav = 0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    buf = io.BytesIO()
    soundfile.write(buf, np.stack([wav, wav], axis=1), sample_rate, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "MP3"])
def test_common_formats_decode_to_24k_mono(fmt: str) -> None:
    audio = decode_audio(_encoded(6.0, fmt=fmt))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.shape[0] - 6 * 24000) < 100


def test_short_prompt_is_a_clear_error_not_an_assert() -> None:
    with pytest.raises(AudioPromptError, match=r"2\.0 s long; it must be longer than 5 s"):
        decode_audio(_encoded(2.0))


def test_garbage_is_a_clear_error() -> None:
    with pytest.raises(AudioPromptError, match="could not be decoded"):
        decode_audio(b"this is not audio at all" * 100)


def test_empty_prompt_is_a_clear_error() -> None:
    with pytest.raises(AudioPromptError, match="empty"):
        decode_audio(b"")


def test_overlong_prompt_is_rejected_when_limited() -> None:
    with pytest.raises(AudioPromptError, match="at most 8 s"):
        decode_audio(_encoded(9.0), max_seconds=8)


@pytest.mark.parametrize("rate", [8000, 192000])
def test_sample_rates_at_the_limits_are_accepted(rate: int) -> None:
    assert abs(decode_audio(_encoded(6.0, sample_rate=rate)).shape[0] - 6 * 24000) < 100


@pytest.mark.parametrize("rate", [7999, 192001])
def test_sample_rates_beyond_the_limits_are_refused_before_decoding(rate: int) -> None:
    with pytest.raises(AudioPromptError, match=f"sample rate is {rate} Hz"):
        decode_audio(_encoded(6.0, sample_rate=rate))


def test_no_more_than_the_limit_is_decoded() -> None:
    buffer = io.BytesIO()
    silence = np.zeros((48000 * 600, 1), dtype=np.float32)  # ten minutes, ~100 kB as FLAC
    soundfile.write(buffer, silence, 48000, format="FLAC")
    with pytest.raises(AudioPromptError, match="at most 8 s"):
        decode_audio(buffer.getvalue(), max_seconds=8)
