"""Support for tests/server/test_stock_clients.py: an engine that keeps the audio it made (what
a client must receive), that audio as a PCM output format, and a worker served over TLS for
clients that only speak wss://."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from starlette.types import ASGIApp

from server.audio import pcm16
from server.engine.engine import AudioChunk, SynthesisRequest
from server.engine.types import SAMPLE_RATE, Audio
from tests.fakes import TOKENS_PER_CHUNK, FakeEngine
from tests.live_server import LiveServer

Pcm = np.ndarray[Any, np.dtype[np.int16]]


@dataclass
class RecordingEngine(FakeEngine):
    """The fake engine, keeping every chunk's audio per request."""

    made: dict[int, list[Audio]] = field(default_factory=dict)

    def chunk(
        self, request: SynthesisRequest, index: int, started: float, tokens: int = TOKENS_PER_CHUNK
    ) -> AudioChunk:
        made = super().chunk(request, index, started, tokens)
        self.made.setdefault(id(request), []).append(made.audio)
        return made

    def chunks_made(self) -> int:
        """Chunks made so far for the latest request."""
        return len(self.made.get(id(self.requests[-1]), [])) if self.requests else 0

    def pcm(self, sample_rate: int = SAMPLE_RATE) -> Pcm:
        """The latest request's audio as ElevenLabs' `pcm_<sample_rate>` (and OpenAI's `pcm` at
        24 kHz): 16-bit samples after one resampling of the whole, which the server's streaming
        resampler matches exactly."""
        audio = np.concatenate(self.made[id(self.requests[-1])])
        if sample_rate != SAMPLE_RATE:
            audio = soxr.resample(audio, SAMPLE_RATE, sample_rate)
        return np.frombuffer(pcm16(audio), "<i2")


def as_pcm(data: bytes) -> Pcm:
    return np.frombuffer(data, "<i2")


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (openssl's command line), valid for a day."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


class LiveTlsServer(LiveServer):
    """`LiveServer` over HTTPS (its `url` is https://)."""

    def __init__(self, app: ASGIApp, cert: Path, key: Path):
        super().__init__(app, ssl_certfile=str(cert), ssl_keyfile=str(key))

    def __enter__(self) -> LiveTlsServer:
        super().__enter__()
        self.url = self.url.replace("http://", "https://")
        return self
