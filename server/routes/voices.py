"""The voice library: `POST /voices`, `GET /voices`, `DELETE /voices/{voice_id}`.

Each voice lists the model it was made for (`model`; null for voices saved before it was kept).
"""

from __future__ import annotations

import asyncio
import unicodedata
from dataclasses import asdict

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.errors import BadRequest, FieldError, NotFound, PayloadTooLarge
from server.form_input import FORM_OVERHEAD_BYTES, check_body_size
from server.voice_resolver import shown_name
from server.voices import MAX_NAME_CHARS, VoiceNotFoundError
from server.worker import Worker

AUDIO_FIELDS = ("audio", "file", "audio_prompt")


async def create_voice(request: Request) -> Response:
    worker: Worker = request.app.state.worker
    resolver = worker.voice_resolver()
    limit = worker.config.max_upload_bytes
    check_body_size(request, limit + FORM_OVERHEAD_BYTES)
    try:
        async with request.form(max_files=1, max_fields=8) as form:
            name = form.get("name")
            audio_field = next(
                (f for f in AUDIO_FIELDS if isinstance(form.get(f), UploadFile)), None
            )
            upload = form.get(audio_field) if audio_field else None
            if audio_field is None or not isinstance(upload, UploadFile):
                raise FieldError("audio", "upload the voice's audio as a file field 'audio'")
            audio = await upload.read(limit + 1)
    except (FieldError, PayloadTooLarge):
        raise
    except Exception as exc:
        raise BadRequest(f"could not read the form: {exc}") from None
    if len(audio) > limit:
        raise PayloadTooLarge(audio_field, limit)
    name = validate_name(name)
    voice = await resolver.conditionals_from_audio(audio, audio_field)
    info = await asyncio.to_thread(worker.voices.save, name, voice, resolver.model_name)
    return JSONResponse(asdict(info), status_code=201)


def validate_name(raw: object) -> str:
    """A voice's name: any text people read (names are never paths: ids are made from them),
    but no control characters, which only garble logs and listings."""
    if not isinstance(raw, str) or not raw.strip():
        raise FieldError("name", "name is required")
    name = raw.strip()
    if len(name) > MAX_NAME_CHARS:
        raise FieldError(
            "name",
            f"name has {len(name)} characters; at most {MAX_NAME_CHARS} are allowed",
            f"1-{MAX_NAME_CHARS} characters",
        )
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise FieldError("name", "name must not contain control characters")
    if not any(unicodedata.category(c)[0] in "LNPS" for c in name):
        raise FieldError("name", "name has nothing visible in it")
    return name


async def list_voices(request: Request) -> Response:
    worker: Worker = request.app.state.worker
    voices = await asyncio.to_thread(worker.voices.list)
    return JSONResponse({"voices": [asdict(v) for v in voices]})


async def delete_voice(request: Request) -> Response:
    worker: Worker = request.app.state.worker
    voice_id = request.path_params["voice_id"]
    try:
        await asyncio.to_thread(worker.voices.delete, voice_id)
    except VoiceNotFoundError:
        raise NotFound(f"no voice {shown_name(voice_id)}", "voice_id") from None
    return Response(status_code=204)
