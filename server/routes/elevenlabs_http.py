"""ElevenLabs' HTTP text-to-speech: `POST /v1/text-to-speech/{voice_id}`, `.../stream`,
`.../with-timestamps` and `.../stream/with-timestamps`, which agent frameworks use for text that
is not streamed.

JSON body `{text, model_id, voice_settings, seed, language_code, ...}`, query `output_format`
(default `mp3_44100_128`). The first two answer the audio itself in that format, sent as it is
generated; `with-timestamps` answers one JSON object `{"audio_base64", "alignment",
"normalized_alignment"}` once the audio is complete, and `stream/with-timestamps` such objects as
newline-delimited JSON as it is generated. The alignments are always null: Chatterbox produces
none, and invented timings would mislead captions. Errors are `{"detail": {"status", "message"}}`
(for `with-timestamps` also when synthesis fails, as nothing was sent yet).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from server.elevenlabs_input import LANGUAGE_FIELD, parse_seed, speech_values, stream_options
from server.engine.types import Audio
from server.errors import BadRequest
from server.forms import parse_speech_fields, validate_text
from server.output_formats import StreamEncoder
from server.routes.disconnect import client_gone
from server.synthesis import Synthesis, admit, spoken_languages
from server.worker import Worker

ENDPOINT = "v1/text-to-speech"
NDJSON_MEDIA_TYPE = "application/x-ndjson"


async def text_to_speech(request: Request) -> Response:
    synthesis, encoder, media_type = await _admitted(request)
    return StreamingResponse(_encoded(synthesis, encoder), media_type=media_type)


async def with_timestamps(request: Request) -> Response:
    synthesis, encoder, _ = await _admitted(request)
    result = await synthesis.whole(client_gone(request))
    data = await asyncio.to_thread(_encoded_whole, encoder, result.audio)
    return JSONResponse(_timestamped(data))


async def stream_with_timestamps(request: Request) -> Response:
    synthesis, encoder, _ = await _admitted(request)
    return StreamingResponse(_lines(synthesis, encoder), media_type=NDJSON_MEDIA_TYPE)


async def _admitted(request: Request) -> tuple[Synthesis, StreamEncoder, str]:
    worker: Worker = request.app.state.worker
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    spoken = spoken_languages(worker)
    options = stream_options(request.query_params, spoken)
    config = worker.config
    text = validate_text(body.get("text"), config.max_text_chars)
    language = body.get(LANGUAGE_FIELD)
    seed = parse_seed(body.get("seed"))
    values = speech_values(
        request.path_params["voice_id"],
        body.get("voice_settings"),
        seed if seed is not None else options.seed,
        options.language if language is None or language == "" else language,
    )
    fields = parse_speech_fields(
        {**values, "text": text},
        variant=config.model,
        max_text_chars=config.max_text_chars,
        languages=spoken,
        language_field=LANGUAGE_FIELD,
    )
    synthesis = await admit(worker, ENDPOINT, fields)
    fmt = options.output_format
    return synthesis, fmt.encoder(), fmt.media_type


async def _encoded(synthesis: Synthesis, encoder: StreamEncoder) -> AsyncIterator[bytes]:
    """The audio in the asked format as it is made. A failure after the headers can only cut
    the body short."""
    async with aclosing(synthesis.chunks()) as chunks:
        async for chunk in chunks:
            if data := encoder.encode(chunk.audio):
                yield data
    if data := encoder.finish():
        yield data


def _encoded_whole(encoder: StreamEncoder, audio: Audio) -> bytes:
    return encoder.encode(audio) + encoder.finish()


async def _lines(synthesis: Synthesis, encoder: StreamEncoder) -> AsyncIterator[bytes]:
    async for data in _encoded(synthesis, encoder):
        yield json.dumps(_timestamped(data)).encode() + b"\n"


def _timestamped(data: bytes) -> dict[str, Any]:
    """ElevenLabs' audio-with-timestamps object, without the timestamps."""
    return {
        "audio_base64": base64.b64encode(data).decode("ascii"),
        "alignment": None,
        "normalized_alignment": None,
    }
