"""`POST /v1/audio/speech`: OpenAI's speech API, so OpenAI clients work unchanged.

`stream_format: "audio"` with `pcm` or `wav` streams the bytes as they are generated (a WAV
header with unknown sizes first); other formats are encoded once complete. `stream_format:
"sse"` sends `speech.audio.delta` events and a final `speech.audio.done`. Errors use OpenAI's
error shape.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from server.admission import Overloaded, Ticket
from server.audio import FILE_FORMATS, PCM_MEDIA_TYPE, encode_file, pcm16, streaming_wav_header
from server.engine.conditionals import VoiceConditionals
from server.engine.engine import AudioChunk, SynthesisRequest
from server.errors import RETRY_AFTER_BUSY_S, RETRY_AFTER_LOADING_S
from server.forms import FieldError, default_params, validate_text
from server.voices import VoiceNotFoundError
from server.worker import NotReady, Worker

logger = logging.getLogger("server")

# OpenAI's voice names. They map to the checkpoint's built-in voice unless a saved voice has
# that id, so a deployment can give each name a voice of its own.
OPENAI_VOICES = frozenset(
    [
        "alloy",
        "ash",
        "ballad",
        "coral",
        "echo",
        "fable",
        "onyx",
        "nova",
        "sage",
        "shimmer",
        "verse",
        "marin",
        "cedar",
    ]
)
BUILTIN_VOICE_NAMES = frozenset({"default", "builtin"})
RESPONSE_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
STREAMABLE_FORMATS = ("pcm", "wav")


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, kind: str = ""):
        super().__init__(message)
        self.status = status
        self.param = param
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")

    def response(self, headers: dict[str, str] | None = None) -> Response:
        body = {
            "error": {"message": str(self), "type": self.kind, "param": self.param, "code": None}
        }
        return JSONResponse(body, status_code=self.status, headers=headers)


@dataclass(frozen=True)
class SpeechRequest:
    text: str
    voice: str
    response_format: str
    stream_format: str


def parse_request(body: Any, max_chars: int) -> SpeechRequest:
    if not isinstance(body, dict):
        raise OpenAIError(400, "the request body must be a JSON object")
    try:
        text = validate_text(body.get("input"), max_chars, name="input")
    except FieldError as exc:
        raise OpenAIError(400, str(exc), "input") from None
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise OpenAIError(400, "model must be a string", "model")
    voice = body.get("voice", "alloy")
    if isinstance(voice, dict):  # newer clients send {"id": ...}
        voice = voice.get("id")
    if not isinstance(voice, str) or not voice:
        raise OpenAIError(400, "voice must be a voice name", "voice")
    response_format = body.get("response_format", "mp3")
    if response_format not in RESPONSE_FORMATS:
        raise OpenAIError(
            400,
            f"response_format must be one of {', '.join(RESPONSE_FORMATS)}",
            "response_format",
        )
    if response_format not in FILE_FORMATS and response_format != "pcm":
        raise OpenAIError(
            400,
            f"response_format {response_format!r} is not supported by this server; "
            f"use one of pcm, wav, flac, mp3, opus",
            "response_format",
        )
    speed = body.get("speed", 1.0)
    if not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        raise OpenAIError(400, "speed must be a number from 0.25 to 4.0", "speed")
    if speed != 1.0:
        raise OpenAIError(400, "only speed 1.0 is supported", "speed")
    stream_format = body.get("stream_format", "audio")
    if stream_format not in ("audio", "sse"):
        raise OpenAIError(400, "stream_format must be 'audio' or 'sse'", "stream_format")
    return SpeechRequest(text, voice, response_format, stream_format)


async def speech(request: Request) -> Response:
    started = time.perf_counter()
    worker: Worker = request.app.state.worker
    try:
        worker.ready_runner()
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise OpenAIError(400, "the request body is not valid JSON") from None
        speech_request = parse_request(body, worker.config.max_text_chars)
        voice = await _voice(worker, speech_request.voice)
        ticket = worker.admission.reserve()
    except OpenAIError as exc:
        return exc.response()
    except NotReady as exc:
        headers = {"Retry-After": str(RETRY_AFTER_LOADING_S)}
        return OpenAIError(503, str(exc)).response(headers)
    except Overloaded:
        headers = {"Retry-After": str(RETRY_AFTER_BUSY_S)}
        return OpenAIError(503, "server busy; retry shortly").response(headers)
    engine_request = SynthesisRequest(
        text=speech_request.text,
        params=default_params(worker.config.model),
        voice=voice,
        started_at=started,
    )
    fmt = speech_request.response_format
    if speech_request.stream_format == "sse":
        return EventSourceResponse(_sse(worker, ticket, engine_request, fmt), ping=5)
    if fmt in STREAMABLE_FORMATS:
        media_type = PCM_MEDIA_TYPE if fmt == "pcm" else FILE_FORMATS["wav"][2]
        return StreamingResponse(
            _audio_stream(worker, ticket, engine_request, fmt == "wav"), media_type=media_type
        )
    try:
        async with ticket.running():
            result = await worker.ready_runner().synthesize(engine_request)
    finally:
        ticket.release()
    worker.metrics.requests.labels("v1/audio/speech", "ok").inc()
    logger.info(
        "v1/audio/speech ok format=%s total=%.2fs audio=%.2fs rtf=%.2f",
        fmt,
        result.metrics.total_latency,
        result.metrics.total_audio_duration,
        result.metrics.rtf,
    )
    body = await asyncio.to_thread(encode_file, result.audio, fmt)
    return Response(body, media_type=FILE_FORMATS[fmt][2])


async def _voice(worker: Worker, name: str) -> VoiceConditionals | None:
    """A saved voice by id, else by name (so a voice saved as "alloy" answers to "alloy"),
    else an OpenAI name means the built-in voice."""
    library = worker.voices
    try:
        return await asyncio.to_thread(library.load, name)
    except VoiceNotFoundError:
        pass
    named = [v for v in await asyncio.to_thread(library.list) if v.name.lower() == name.lower()]
    if named:
        return await asyncio.to_thread(library.load, named[-1].id)  # the newest of that name
    if name in OPENAI_VOICES or name in BUILTIN_VOICE_NAMES:
        return None
    raise OpenAIError(
        400, f"unknown voice {name!r}: use an OpenAI voice name or a saved voice id", "voice"
    )


async def _audio_stream(
    worker: Worker, ticket: Ticket, request: SynthesisRequest, wav_header: bool
) -> AsyncIterator[bytes]:
    outcome, last = "error", None
    try:
        async with ticket.running():
            if wav_header:
                yield streaming_wav_header()
            async for chunk in worker.ready_runner().stream(request):
                last = chunk
                yield pcm16(chunk.audio)
        outcome = "ok"
    except asyncio.CancelledError:
        outcome = "disconnected"
        raise
    finally:
        ticket.release()
        _log(worker, "audio", outcome, last)


async def _sse(
    worker: Worker, ticket: Ticket, request: SynthesisRequest, fmt: str
) -> AsyncIterator[ServerSentEvent]:
    outcome, samples, last = "error", 0, None
    try:
        async with ticket.running():
            async for chunk in worker.ready_runner().stream(request):
                last = chunk
                samples += chunk.audio.size
                # Compressed formats cannot be cut at arbitrary points: each delta is raw PCM
                # unless a complete file per chunk was asked for (wav).
                audio = pcm16(chunk.audio) if fmt != "wav" else encode_file(chunk.audio, "wav")
                delta = {"type": "speech.audio.delta", "audio": base64.b64encode(audio).decode()}
                yield ServerSentEvent(json.dumps(delta))
        usage = {
            "input_tokens": len(request.text),
            "output_tokens": samples // 960,
            "total_tokens": len(request.text) + samples // 960,
        }
        yield ServerSentEvent(json.dumps({"type": "speech.audio.done", "usage": usage}))
        outcome = "ok"
    except asyncio.CancelledError:
        outcome = "disconnected"
        raise
    except Exception as exc:
        logger.exception("openai sse stream failed")
        yield ServerSentEvent(json.dumps({"type": "error", "error": {"message": str(exc)}}))
    finally:
        ticket.release()
        _log(worker, "sse", outcome, last)


def _log(worker: Worker, mode: str, outcome: str, last: AudioChunk | None) -> None:
    worker.metrics.requests.labels("v1/audio/speech", outcome).inc()
    if last is None:
        logger.info("v1/audio/speech %s %s (no audio)", mode, outcome)
        return
    m = last.metrics
    worker.metrics.audio_seconds.inc(m.total_audio_duration)
    logger.info(
        "v1/audio/speech %s %s chunks=%d first=%.2fs total=%.2fs audio=%.2fs rtf=%.2f",
        mode,
        outcome,
        last.chunk_id,
        m.first_chunk_latency,
        m.total_latency,
        m.total_audio_duration,
        m.rtf,
    )
