"""Audio encodings the API speaks: raw PCM, WAV (whole or streamed) and compressed files."""

from __future__ import annotations

import io
import struct

import numpy as np

from server.engine.types import SAMPLE_RATE, Audio

# An unknown length in a streamed WAV header: players read until the connection ends.
STREAMING_SIZE = 0xFFFFFFFF

# response_format -> (soundfile format, subtype, media type)
FILE_FORMATS: dict[str, tuple[str, str, str]] = {
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "flac": ("FLAC", "PCM_16", "audio/flac"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
    "opus": ("OGG", "OPUS", "audio/ogg"),
}
PCM_MEDIA_TYPE = "audio/pcm"


def pcm16(audio: Audio) -> bytes:
    """16-bit little-endian signed PCM, clipped to full scale."""
    clipped = np.clip(audio, -1.0, 1.0)
    return (clipped * 32767.0).round().astype("<i2").tobytes()


def encode_file(audio: Audio, response_format: str, sample_rate: int = SAMPLE_RATE) -> bytes:
    container, subtype, _ = FILE_FORMATS[response_format]
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, audio, sample_rate, format=container, subtype=subtype)
    return buffer.getvalue()


def streaming_wav_header(sample_rate: int = SAMPLE_RATE) -> bytes:
    """A 16-bit mono WAV header whose sizes say "unknown", for audio streamed as it is made."""
    byte_rate = sample_rate * 2
    return (
        b"RIFF"
        + struct.pack("<I", STREAMING_SIZE)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, byte_rate, 2, 16)
        + b"data"
        + struct.pack("<I", STREAMING_SIZE)
    )
