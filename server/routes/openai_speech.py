"""`POST /v1/audio/speech`: OpenAI's speech API, so OpenAI clients work unchanged.

`stream_format: "audio"` with `pcm` or `wav` streams the bytes as they are generated (a WAV
header with unknown sizes first); other formats are encoded once complete. `stream_format:
"sse"` sends `speech.audio.delta` events and a final `speech.audio.done`. Two fields of our
own (`extra_body` in OpenAI's SDKs): `seed` and `language` (ISO 639-1, default `en`). Errors
use OpenAI's error shape (`server/error_responses.py`).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from server.audio import FILE_FORMATS, PCM_MEDIA_TYPE, encode_file, pcm16, streaming_wav_header
from server.engine.schema import AudioChunk
from server.error_responses import openai_body
from server.errors import BadRequest, FieldError, ServiceError
from server.forms import FIELDS, SpeechFields, default_params, validate_language, validate_text
from server.routes.disconnect import client_gone
from server.synthesis import PING_SECONDS, Synthesis, admit, spoken_languages
from server.voice_resolver import VoiceChoice
from server.worker import Worker

ENDPOINT = "v1/audio/speech"
RESPONSE_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
STREAMABLE_FORMATS = ("pcm", "wav")
DEFAULT_VOICE = "alloy"


@dataclass(frozen=True)
class SpeechRequest:
    fields: SpeechFields
    response_format: str
    stream_format: str


def parse_request(body: Any, worker: Worker) -> SpeechRequest:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    text = validate_text(body.get("input"), worker.config.max_text_chars, name="input")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise FieldError("model", "model must be a string")
    voice = body.get("voice", DEFAULT_VOICE)
    if isinstance(voice, dict):  # newer clients send {"id": ...}
        voice = voice.get("id")
    if not isinstance(voice, str) or not voice:
        raise FieldError("voice", "voice must be a voice name")
    response_format = body.get("response_format", "mp3")
    if response_format not in RESPONSE_FORMATS:
        raise FieldError(
            "response_format", f"response_format must be one of {', '.join(RESPONSE_FORMATS)}"
        )
    if response_format not in FILE_FORMATS and response_format not in STREAMABLE_FORMATS:
        raise FieldError(
            "response_format",
            f"response_format {response_format!r} is not supported by this server; "
            "use one of pcm, wav, flac, mp3, opus",
        )
    speed = body.get("speed", 1.0)
    if not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        raise FieldError("speed", "speed must be a number from 0.25 to 4.0")
    if speed != 1.0:
        raise FieldError("speed", "only speed 1.0 is supported")
    stream_format = body.get("stream_format", "audio")
    if stream_format not in ("audio", "sse"):
        raise FieldError("stream_format", "stream_format must be 'audio' or 'sse'")
    # Extensions OpenAI's clients send through `extra_body`: reproducible speech, and the
    # language (OpenAI's model detects it; Chatterbox's multilingual model is told).
    seed = None if body.get("seed") is None else int(FIELDS["seed"].parse(body["seed"]))
    fields = SpeechFields(
        text=text,
        params=default_params(worker.config.model),
        seed=seed,
        voice=VoiceChoice(name=voice),
        language=validate_language(body.get("language"), spoken_languages(worker)),
    )
    return SpeechRequest(fields, response_format, stream_format)


async def speech(request: Request) -> Response:
    worker: Worker = request.app.state.worker
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None
    parsed = parse_request(body, worker)
    synthesis = await admit(worker, ENDPOINT, parsed.fields)
    fmt = parsed.response_format
    if parsed.stream_format == "sse":
        return EventSourceResponse(_sse(synthesis, fmt), ping=PING_SECONDS)
    if fmt in STREAMABLE_FORMATS:
        return StreamingResponse(
            _audio(synthesis, fmt == "wav"),
            media_type=PCM_MEDIA_TYPE if fmt == "pcm" else FILE_FORMATS["wav"][2],
        )
    result = await synthesis.whole(client_gone(request))
    body_bytes = await asyncio.to_thread(encode_file, result.audio, fmt)
    return Response(body_bytes, media_type=FILE_FORMATS[fmt][2])


async def _audio(synthesis: Synthesis, wav_header: bool) -> AsyncIterator[bytes]:
    """Raw bytes as generated. A failure after the headers can only abort the connection: the
    client sees a truncated body rather than a clean end."""
    if wav_header:
        yield streaming_wav_header()
    async with aclosing(synthesis.chunks()) as chunks:
        async for chunk in chunks:
            yield pcm16(chunk.audio)


async def _sse(synthesis: Synthesis, fmt: str) -> AsyncIterator[ServerSentEvent]:
    last: AudioChunk | None = None
    try:
        async with aclosing(synthesis.chunks()) as chunks:
            async for chunk in chunks:
                last = chunk
                # Compressed formats cannot be cut at arbitrary points: each delta is raw PCM
                # unless a complete file per chunk was asked for (wav).
                audio = pcm16(chunk.audio) if fmt != "wav" else encode_file(chunk.audio, "wav")
                delta = {"type": "speech.audio.delta", "audio": base64.b64encode(audio).decode()}
                yield ServerSentEvent(json.dumps(delta))
    except ServiceError as exc:
        yield ServerSentEvent(json.dumps({"type": "error", **openai_body(exc)}))
        return
    assert last is not None and last.summary is not None
    text_tokens, speech_tokens = len(synthesis.fields.text), len(last.summary.speech_tokens)
    usage = {
        "input_tokens": text_tokens,
        "output_tokens": speech_tokens,
        "total_tokens": text_tokens + speech_tokens,
    }
    yield ServerSentEvent(json.dumps({"type": "speech.audio.done", "usage": usage}))
