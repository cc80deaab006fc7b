"""ElevenLabs' API as input: query parameters, voice settings and body fields made into our
request, and the error messages its clients read.

Chatterbox has other knobs than ElevenLabs' voices. `style` (0-1, ElevenLabs' "style
exaggeration") maps onto Chatterbox's `exaggeration` (0.5-2); `stability`, `similarity_boost`,
`use_speaker_boost` and `speed` are checked against ElevenLabs' ranges and otherwise have no
effect. Chatterbox's own settings (`exaggeration`, `temperature`, `cfg_weight`, `top_p`,
`min_p`, `top_k`, `repetition_penalty`) are accepted in `voice_settings` too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from server.errors import Conflict, FieldError, NotReady, Overloaded, ServiceError
from server.forms import FIELDS, SAMPLING_FIELDS, validate_language
from server.output_formats import DEFAULT_OUTPUT_FORMAT, OutputFormat, parse_output_format

# ElevenLabs' defaults and limits for `inactivity_timeout` (seconds); out-of-range values are
# clamped, as stock clients send 180 and expect it to work.
DEFAULT_INACTIVITY_TIMEOUT_S = 20
MAX_INACTIVITY_TIMEOUT_S = 180
# ElevenLabs' name for the request's language (ISO 639-1): a query parameter of the
# WebSockets, a body field of the HTTP endpoints.
LANGUAGE_FIELD = "language_code"
# ElevenLabs' `generation_config.chunk_length_schedule` bounds, per value.
SCHEDULE_RANGE = (50, 500)
# `style` 0 is ElevenLabs' neutral default, as 0.5 is Chatterbox's; 1 is the most expressive.
STYLE_TO_EXAGGERATION = (0.5, 2.0)
VOICE_SETTING_RANGES = {
    "stability": (0.0, 1.0),
    "similarity_boost": (0.0, 1.0),
    "style": (0.0, 1.0),
    "speed": (0.7, 1.2),
}


@dataclass(frozen=True)
class StreamOptions:
    """The query parameters of a text-to-speech request or socket."""

    output_format: OutputFormat
    inactivity_timeout_s: float
    seed: int | None
    language: str


def stream_options(query: Mapping[str, str], spoken: Sequence[str] | None) -> StreamOptions:
    """`spoken`: the loaded model's languages (None: none loaded yet)."""
    language = validate_language(query.get(LANGUAGE_FIELD), spoken, LANGUAGE_FIELD)
    timeout = DEFAULT_INACTIVITY_TIMEOUT_S
    if query.get("inactivity_timeout"):
        try:
            timeout = int(query["inactivity_timeout"])
        except ValueError:
            raise FieldError(
                "inactivity_timeout",
                "inactivity_timeout must be a whole number of seconds",
                f"1-{MAX_INACTIVITY_TIMEOUT_S}",
            ) from None
    return StreamOptions(
        output_format=parse_output_format(query.get("output_format") or DEFAULT_OUTPUT_FORMAT),
        inactivity_timeout_s=min(max(timeout, 1), MAX_INACTIVITY_TIMEOUT_S),
        seed=parse_seed(query.get("seed")),
        language=language,
    )


def parse_seed(raw: object) -> int | None:
    return None if raw is None or raw == "" else int(FIELDS["seed"].parse(raw))


def speech_values(
    voice_id: str, voice_settings: object, seed: int | None, language: str
) -> dict[str, Any]:
    """The values `parse_speech_fields` takes, from a voice id and ElevenLabs' settings."""
    if voice_settings is None:
        voice_settings = {}
    if not isinstance(voice_settings, dict):
        raise FieldError("voice_settings", "voice_settings must be an object")
    for name, (low, high) in VOICE_SETTING_RANGES.items():
        value = voice_settings.get(name)
        if value is None:
            continue
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not low <= value <= high:
            raise FieldError(name, f"{name} must be a number from {low:g} to {high:g}")
    boost = voice_settings.get("use_speaker_boost")
    if boost is not None and not isinstance(boost, bool):
        raise FieldError("use_speaker_boost", "use_speaker_boost must be true or false")
    values = {k: voice_settings[k] for k in SAMPLING_FIELDS if voice_settings.get(k) is not None}
    style = voice_settings.get("style")
    if "exaggeration" not in values and style is not None:
        low, high = STYLE_TO_EXAGGERATION
        values["exaggeration"] = low + (high - low) * float(style)
    return {**values, "voice": voice_id, "seed": seed, "language": language}


def chunk_length_schedule(generation_config: object) -> tuple[int, ...] | None:
    if generation_config is None:
        return None
    if not isinstance(generation_config, dict):
        raise FieldError("generation_config", "generation_config must be an object")
    schedule = generation_config.get("chunk_length_schedule")
    if schedule is None:
        return None
    low, high = SCHEDULE_RANGE
    if (
        not isinstance(schedule, list)
        or not schedule
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in schedule)
        or not all(low <= v <= high for v in schedule)
    ):
        raise FieldError(
            "chunk_length_schedule",
            f"chunk_length_schedule must be a list of whole numbers from {low} to {high}",
        )
    return tuple(schedule)


def error_code(exc: ServiceError) -> str:
    """ElevenLabs-style error names for what can go wrong here."""
    if isinstance(exc, FieldError):
        return f"invalid_{exc.field}" if exc.field else "invalid_request"
    if isinstance(exc, Conflict):
        return exc.code
    if isinstance(exc, Overloaded):
        return "too_many_concurrent_requests"
    if isinstance(exc, NotReady):
        return "model_not_ready"
    return "generation_failed" if exc.status >= 500 else "invalid_request"
