"""The JSON payloads of the seeds' SSE events."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import asdict
from typing import Any

from server.audio import pcm16
from server.engine.schema import AudioChunk, StreamMetrics
from server.engine.types import SAMPLE_RATE

PCM_ENCODING = "pcm_s16le"


def audio_chunk_event(chunk: AudioChunk) -> dict[str, Any]:
    """The seeds' `audio_chunk` SSE event: the audio in base64, with its metadata."""
    audio = base64.b64encode(pcm16(chunk.audio)).decode("ascii")
    return {"chunk_id": chunk.chunk_id, "audio_chunk": audio, **_chunk_fields(chunk)}


def audio_chunk_metadata(chunk: AudioChunk) -> dict[str, Any]:
    """What a protocol that sends the audio as a binary frame says about it."""
    return {"chunk_id": chunk.chunk_id, "samples": int(chunk.audio.size), **_chunk_fields(chunk)}


def _chunk_fields(chunk: AudioChunk) -> dict[str, Any]:
    return {
        "encoding": PCM_ENCODING,
        "sample_rate": SAMPLE_RATE,
        "metrics": asdict(chunk.metrics),
    }


def done_event(last: AudioChunk) -> dict[str, Any]:
    metrics: dict[str, Any] = asdict(last.metrics)
    if last.summary is not None:
        metrics.update(
            speech_tokens=len(last.summary.speech_tokens),
            speech_tokens_digest=token_digest(last.summary.speech_tokens),
            token_cap_hit=last.summary.token_cap_hit,
            seed=last.summary.seed,
        )
    return {"message": "Streaming complete", "total_chunks": last.chunk_id, "metrics": metrics}


def token_digest(tokens: list[int]) -> str:
    """A short fingerprint of the speech tokens: equal digests, equal tokens (reproducibility)."""
    return hashlib.sha256(",".join(map(str, tokens)).encode()).hexdigest()[:16]


def timing_headers(metrics: StreamMetrics) -> dict[str, str]:
    return {
        "X-Total-Latency": f"{metrics.total_latency:.4f}",
        "X-Audio-Duration": f"{metrics.total_audio_duration:.4f}",
        "X-RTF": f"{metrics.rtf:.4f}",
    }
