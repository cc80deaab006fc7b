"""Reading a synthesis form (multipart or urlencoded) within the configured limits."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import UploadFile
from starlette.requests import Request

from server.config import ServerConfig
from server.errors import BadRequest, FieldError, PayloadTooLarge
from server.forms import SpeechFields, parse_speech_fields

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
# Room for the non-file fields on top of the upload itself.
FORM_OVERHEAD_BYTES = 64 * 1024


def check_body_size(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge("body", limit)


async def read_speech_form(
    request: Request, config: ServerConfig, languages: Sequence[str] | None
) -> SpeechFields:
    """The form's fields; `languages`: the loaded model's (None: none loaded yet)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in FORM_TYPES:
        raise BadRequest(
            f"send the request as multipart/form-data or application/x-www-form-urlencoded, "
            f"not {content_type or 'no content type'}"
        )
    check_body_size(request, config.max_upload_bytes + FORM_OVERHEAD_BYTES)
    try:
        # The context manager closes (and deletes) spooled upload files whatever happens.
        async with request.form(
            max_files=1, max_fields=64, max_part_size=config.max_text_chars * 4 + 1024
        ) as form:
            values = {k: v for k, v in form.items() if isinstance(v, str)}
            prompt = form.get("audio_prompt")
            audio: bytes | None = None
            if isinstance(prompt, UploadFile):
                audio = await prompt.read(config.max_upload_bytes + 1)
                if len(audio) > config.max_upload_bytes:
                    raise PayloadTooLarge("audio_prompt", config.max_upload_bytes)
                audio = audio or None
            elif isinstance(prompt, str) and prompt:
                raise FieldError("audio_prompt", "audio_prompt must be an uploaded file")
    except (FieldError, PayloadTooLarge):
        raise
    except Exception as exc:  # multipart parser errors, a body cut short, too many fields
        raise BadRequest(f"could not read the form: {exc}") from None
    return parse_speech_fields(
        values,
        variant=config.model,
        max_text_chars=config.max_text_chars,
        audio_prompt=audio,
        languages=languages,
    )
