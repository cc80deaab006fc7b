"""ElevenLabs' `output_format` names, and turning the engine's 24 kHz float chunks into one of them
as they are generated.

A name is `codec_rate[_kbps]`. Every name on ElevenLabs' text-to-speech list is accepted: pcm
(s16le), G.711 u-law and A-law, MP3 and Ogg Opus are all produced with libsndfile (through
soundfile) after one streaming resampler (soxr), so audio is encoded once, in order, with no
per-chunk restarts: no clicks at chunk joins, and the concatenated output equals encoding the whole
signal at once.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import soundfile
import soxr

from server.audio import PCM_MEDIA_TYPE, pcm16
from server.engine.types import SAMPLE_RATE, Audio
from server.errors import FieldError

Codec = Literal["pcm", "ulaw", "alaw", "mp3", "opus"]

# ElevenLabs' default for its HTTP text-to-speech endpoints.
DEFAULT_OUTPUT_FORMAT = "mp3_44100_128"

# Opus pages are flushed at least this often (libsndfile's default of 1 s would hold a second of
# audio back; 50 ms is the least it allows).
OPUS_PAGE_MS = 50.0
# sndfile.h's SFC_SET_OGG_PAGE_LATENCY_MS, which soundfile does not name.
_SFC_SET_OGG_PAGE_LATENCY_MS = 0x1302

_MEDIA_TYPES: dict[Codec, str] = {
    "pcm": PCM_MEDIA_TYPE,
    # RFC 4856's names for G.711 at 8 kHz.
    "ulaw": "audio/PCMU",
    "alaw": "audio/PCMA",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
}


@dataclass(frozen=True)
class OutputFormat:
    name: str
    codec: Codec
    sample_rate: int
    bitrate_kbps: int | None
    media_type: str

    def encoder(self) -> StreamEncoder:
        return StreamEncoder(self)


def _format(codec: Codec, sample_rate: int, kbps: int | None = None) -> OutputFormat:
    name = f"{codec}_{sample_rate}" + ("" if kbps is None else f"_{kbps}")
    return OutputFormat(name, codec, sample_rate, kbps, _MEDIA_TYPES[codec])


# ElevenLabs' list, in its order (its Python SDK's StreamTextToSpeechRequestOutputFormat).
OUTPUT_FORMATS: dict[str, OutputFormat] = {
    f.name: f
    for f in [
        *(_format("mp3", rate, kbps) for rate, kbps in [(22050, 32), (24000, 48)]),
        *(_format("mp3", 44100, kbps) for kbps in (32, 64, 96, 128, 192)),
        *(_format("pcm", rate) for rate in (8000, 16000, 22050, 24000, 32000, 44100, 48000)),
        _format("ulaw", 8000),
        _format("alaw", 8000),
        *(_format("opus", 48000, kbps) for kbps in (32, 64, 96, 128, 192)),
    ]
}
ALLOWED = ", ".join(OUTPUT_FORMATS)


def parse_output_format(name: str) -> OutputFormat:
    try:
        return OUTPUT_FORMATS[name]
    except KeyError:
        raise FieldError(
            "output_format",
            f"output_format {name!r} is not supported; use one of {ALLOWED}",
            ALLOWED,
        ) from None


class StreamEncoder:
    """One stream's encoder: `encode` each chunk as it comes, then `finish` once."""

    def __init__(self, fmt: OutputFormat) -> None:
        self.format = fmt
        # One resampler for the whole stream: its filter state carries across chunk joins.
        self._resampler = (
            None
            if fmt.sample_rate == SAMPLE_RATE
            else soxr.ResampleStream(SAMPLE_RATE, fmt.sample_rate, 1, dtype="float32")
        )
        self._codec: _Codec = _Pcm16() if fmt.codec == "pcm" else _Libsndfile(fmt)
        self._finished = False

    def encode(self, chunk: Audio) -> bytes:
        """The bytes ready to send for this chunk; possibly none, as codecs and the resampler
        hold back a few milliseconds until more audio (or `finish`) comes."""
        return self._encode(np.asarray(chunk, dtype=np.float32).reshape(-1), last=False)

    def finish(self) -> bytes:
        """Everything still held back; the encoder is spent afterwards."""
        tail = self._encode(np.zeros(0, dtype=np.float32), last=True)
        self._finished = True
        return tail + self._codec.finish()

    def _encode(self, chunk: Audio, last: bool) -> bytes:
        if self._finished:
            raise RuntimeError(f"{self.format.name} encoder used after finish()")
        if self._resampler is not None:
            chunk = self._resampler.resample_chunk(chunk, last=last)
        if chunk.size == 0:
            return b""
        # The model, and resampling near full scale, can go past ±1: clip for every codec, as
        # libsndfile's G.711 tables have no entries beyond full scale.
        return self._codec.encode(np.clip(chunk, -1.0, 1.0))


class _Codec(Protocol):
    def encode(self, samples: Audio) -> bytes: ...

    def finish(self) -> bytes: ...


class _Pcm16:
    def encode(self, samples: Audio) -> bytes:
        return pcm16(samples)  # the same conversion as our own and OpenAI's pcm

    def finish(self) -> bytes:
        return b""


# libsndfile's (major format, subtype) for each compressed codec.
_LIBSNDFILE: dict[Codec, tuple[str, str]] = {
    "ulaw": ("RAW", "ULAW"),
    "alaw": ("RAW", "ALAW"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "opus": ("OGG", "OPUS"),
}


class _Libsndfile:
    """A libsndfile writer whose file is the stream: what each write adds is sent at once."""

    def __init__(self, fmt: OutputFormat) -> None:
        self._sink = _StreamSink()
        self._drop_placeholder = fmt.codec == "mp3"
        container, subtype = _LIBSNDFILE[fmt.codec]
        self._file = soundfile.SoundFile(
            self._sink,
            "w",
            samplerate=fmt.sample_rate,
            channels=1,
            format=container,
            subtype=subtype,
            **_bitrate_settings(fmt),
        )
        if fmt.codec == "opus":
            latency = soundfile._ffi.new("double[1]", [OPUS_PAGE_MS])
            soundfile._snd.sf_command(
                self._file._file,
                _SFC_SET_OGG_PAGE_LATENCY_MS,
                latency,
                soundfile._ffi.sizeof(latency),
            )

    def encode(self, samples: Audio) -> bytes:
        self._file.write(samples)
        return self._take()

    def finish(self) -> bytes:
        self._file.close()  # flushes the codec's delay line and writes any trailer
        return self._take()

    def _take(self) -> bytes:
        data = self._sink.take()
        if self._drop_placeholder and data:
            self._drop_placeholder = False
            data = _drop_lame_placeholder(data)
        return data


def _bitrate_settings(fmt: OutputFormat) -> dict[str, float | str]:
    """soundfile's compression level (0 best .. 1 smallest) that makes libsndfile pick exactly
    `fmt.bitrate_kbps`, inverting the linear maps in its mpeg_l3_encode.c and ogg_opus.c."""
    kbps = fmt.bitrate_kbps
    if kbps is None:
        return {}
    if fmt.codec == "mp3":
        # The kbps range of the MPEG version the rate implies (MPEG-1 from 32 kHz, else 2 / 2.5).
        high, low = (320.0, 32.0) if fmt.sample_rate >= 32000 else (160.0, 8.0)
        # libsndfile truncates `high - level * (high - low)` to an int: aim half a kbps above.
        level = (high - (kbps + 0.5)) / (high - low)
        return {"compression_level": level, "bitrate_mode": "CONSTANT"}
    # Opus: bits/s = int((1 - level) * 250000 + 6000), per channel.
    return {"compression_level": 1.0 - (kbps * 1000 - 6000 + 0.5) / 250000}


def _drop_lame_placeholder(data: bytes) -> bytes:
    """Drop the all-zero frame LAME starts an MP3 with.

    LAME fills that frame in as a Xing/Info header when the file is closed, by seeking back; a
    stream can't go back, so it would reach the client as a frame of silence. It is a 4-byte
    frame header, then zeros up to the next frame's sync byte.
    """
    end = 4
    while end < len(data) and data[end] == 0:
        end += 1
    if data[0] == 0xFF and end > 4 + 16 and end < len(data) and data[end] == 0xFF:
        return data[end:]
    return data


class _StreamSink:
    """The write-only file libsndfile writes into; `take` hands out what was appended since.

    Bytes once taken are gone, so a write behind the end is dropped: libsndfile's MP3 writer
    seeks back on close to fill in LAME's info header, which only helps seeking and gapless
    trimming in files.
    """

    def __init__(self) -> None:
        self._pending = bytearray()
        self._pos = 0
        self._end = 0

    def write(self, data: bytes) -> int:
        behind = min(max(self._end - self._pos, 0), len(data))
        self._pending += data[behind:]
        self._pos += len(data)
        self._end = max(self._end, self._pos)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._end}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        data = bytes(self._pending)
        self._pending.clear()
        return data
