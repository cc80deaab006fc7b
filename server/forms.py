"""Reading and validating synthesis requests: every field checked before any work starts.

A bad value raises `FieldError`, which the routes turn into HTTP 422 with a JSON body naming
the field and what it accepts.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from server.engine.engine import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE
from server.engine.loading import ModelVariant
from server.engine.sampling import (
    MULTILINGUAL_DEFAULTS,
    ORIGINAL_DEFAULTS,
    TURBO_DEFAULTS,
    SamplingParams,
)
from server.engine.schema import DEFAULT_LANGUAGE
from server.engine.text_feed import TextFeed
from server.errors import FieldError
from server.voice_resolver import VoiceChoice

MAX_SEED = 2**31 - 1
MAX_NEW_TOKENS_LIMIT = 4000  # 160 s of speech
# An ISO 639-1 code, as clients send it: a region or script after it (BCP 47's `pt-BR`,
# `zh-Hans`, `en_US`) is accepted and dropped, as the models speak languages, not variants.
LANGUAGE_CODE = re.compile(r"([a-z]{2})(?:[-_][a-z0-9]{1,8})*")
MAX_SHOWN_CODE_CHARS = 32


@dataclass(frozen=True)
class NumberField:
    name: str
    low: float
    high: float
    integer: bool = False
    low_inclusive: bool = True

    @property
    def allowed(self) -> str:
        opening = "[" if self.low_inclusive else "("
        kind = "integer" if self.integer else "number"
        return f"{kind} in {opening}{self.low:g}, {self.high:g}]"

    def parse(self, raw: object) -> float | int:
        text = str(raw).strip()
        try:
            value: float | int = int(text) if self.integer else float(text)
        except ValueError:
            message = f"{self.name} must be a {self.allowed}"
            raise FieldError(self.name, message, self.allowed) from None
        too_low = value < self.low if self.low_inclusive else value <= self.low
        if not math.isfinite(value) or too_low or value > self.high:
            raise FieldError(
                self.name, f"{self.name} is {text}; it must be a {self.allowed}", self.allowed
            )
        return value


FIELDS: dict[str, NumberField] = {
    f.name: f
    for f in (
        NumberField("exaggeration", 0.0, 2.0),
        NumberField("temperature", 0.0, 5.0, low_inclusive=False),
        NumberField("cfg_weight", 0.0, 1.0),
        NumberField("top_p", 0.0, 1.0, low_inclusive=False),
        NumberField("min_p", 0.0, 1.0),
        NumberField("top_k", 0, 10000, integer=True),
        NumberField("repetition_penalty", 1.0, 3.0),
        NumberField("chunk_size", MIN_CHUNK_SIZE, MAX_CHUNK_SIZE, integer=True),
        NumberField("seed", 0, MAX_SEED, integer=True),
        NumberField("max_new_tokens", 1, MAX_NEW_TOKENS_LIMIT, integer=True),
    )
}
SAMPLING_FIELDS = (
    "exaggeration",
    "temperature",
    "cfg_weight",
    "top_p",
    "min_p",
    "top_k",
    "repetition_penalty",
)


@dataclass(frozen=True)
class SpeechFields:
    """A validated synthesis request, before its voice is resolved: what every endpoint's
    input becomes."""

    text: str
    params: SamplingParams
    chunk_size: int = DEFAULT_CHUNK_SIZE
    seed: int | None = None
    max_new_tokens: int | None = None
    voice: VoiceChoice = field(default_factory=VoiceChoice)
    # Text-in streaming: `text` is empty and the text arrives through the feed.
    text_feed: TextFeed | None = None
    # ISO 639-1, lower case; checked against the loaded model's languages when admitted.
    language: str = DEFAULT_LANGUAGE
    language_field: str = "language"  # what the request's API calls it, for errors


# What a request gets for the fields it leaves out: upstream `generate`'s defaults per model.
DEFAULT_PARAMS = {
    ModelVariant.TURBO: TURBO_DEFAULTS,
    ModelVariant.ORIGINAL: ORIGINAL_DEFAULTS,
    ModelVariant.MULTILINGUAL: MULTILINGUAL_DEFAULTS,
}


def default_params(variant: ModelVariant) -> SamplingParams:
    return DEFAULT_PARAMS[variant]


def validate_text(raw: object, max_chars: int, name: str = "text") -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise FieldError(name, f"{name} is required and must not be empty")
    if len(raw) > max_chars:
        raise FieldError(
            name,
            f"{name} has {len(raw)} characters; at most {max_chars} are allowed",
            f"1-{max_chars} characters",
        )
    if not speakable(raw):
        raise FieldError(
            name,
            f"{name} has nothing to speak: no letters or digits",
            "text with at least one letter or digit",
        )
    return raw


def speakable(text: str) -> bool:
    """Whether `text` has a letter or a digit, in any script. Emoji, punctuation, invisible
    characters (zero-width spaces, direction marks) alone give the model nothing to say: it
    would make up a noise of its own, or stop at once."""
    return any(unicodedata.category(c)[0] in "LN" for c in text)


def validate_language(raw: object, spoken: Sequence[str] | None, name: str = "language") -> str:
    """A request's language as the engine takes it: an ISO 639-1 code in lower case, `en` when
    none is given. Refused unless the loaded model speaks it; `spoken` is None while no model
    is loaded (only the code's form is checked then: admitting the request checks the rest)."""
    allowed = ", ".join(spoken) if spoken is not None else "an ISO 639-1 code such as 'en'"
    speaks = f"; the loaded model speaks {allowed}" if spoken is not None else ""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        code = DEFAULT_LANGUAGE
    else:
        found = LANGUAGE_CODE.fullmatch(raw.strip().lower()) if isinstance(raw, str) else None
        if found is None:
            shown = repr(raw[:MAX_SHOWN_CODE_CHARS]) if isinstance(raw, str) else "not a string"
            raise FieldError(
                name,
                f"{name} must be an ISO 639-1 language code such as 'en', not {shown}{speaks}",
                allowed,
            )
        code = found.group(1)
    if spoken is not None and code not in spoken:
        raise FieldError(name, f"{name} {code!r} is not spoken here{speaks}", allowed)
    return code


def parse_speech_fields(
    values: Mapping[str, object],
    *,
    variant: ModelVariant,
    max_text_chars: int,
    audio_prompt: bytes | None = None,
    text_feed: TextFeed | None = None,
    languages: Sequence[str] | None = None,
    language_field: str = "language",
) -> SpeechFields:
    """Validate form values (strings or JSON numbers) into `SpeechFields`; empty values mean
    "default". With a `text_feed`, the text arrives through it instead of `values`. The
    language is `values["language"]`, one of `languages` (the loaded model's; None: not known
    yet); errors about it name `language_field`."""
    text = "" if text_feed is not None else validate_text(values.get("text"), max_text_chars)
    language = validate_language(values.get("language"), languages, language_field)
    given: dict[str, float | int] = {}
    for name, spec in FIELDS.items():
        raw = values.get(name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        given[name] = spec.parse(raw)
    sampling: dict[str, Any] = {k: v for k, v in given.items() if k in SAMPLING_FIELDS}
    params = replace(default_params(variant), **sampling)
    voice = values.get("voice")
    voice_id = voice.strip() if isinstance(voice, str) and voice.strip() else None
    if voice_id is not None and audio_prompt is not None:
        raise FieldError("voice", "give either voice or audio_prompt, not both")
    return SpeechFields(
        text=text,
        params=params,
        chunk_size=int(given.get("chunk_size", DEFAULT_CHUNK_SIZE)),
        seed=_optional_int(given.get("seed")),
        max_new_tokens=_optional_int(given.get("max_new_tokens")),
        voice=VoiceChoice(name=voice_id, prompt=audio_prompt),
        text_feed=text_feed,
        language=language,
        language_field=language_field,
    )


def _optional_int(value: float | int | None) -> int | None:
    return None if value is None else int(value)
