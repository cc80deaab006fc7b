"""Audio prompts for tests: a steady tone encoded as a WAV file."""

from __future__ import annotations

import io

import numpy as np
import soundfile


def wav_bytes(seconds: float, sample_rate: int = 24000) -> bytes:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wav = (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, wav, sample_rate, format="WAV")
    return buffer.getvalue()
