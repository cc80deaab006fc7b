"""Form validation rules, without HTTP."""

from __future__ import annotations

import pytest

from server.engine.loading import ModelVariant
from server.engine.sampling import MULTILINGUAL_DEFAULTS, ORIGINAL_DEFAULTS, TURBO_DEFAULTS
from server.error_responses import native_body
from server.errors import FieldError
from server.forms import parse_speech_fields


def test_defaults_follow_the_model_variant() -> None:
    turbo = parse_speech_fields({"text": "x"}, variant=ModelVariant.TURBO, max_text_chars=9)
    original = parse_speech_fields({"text": "x"}, variant=ModelVariant.ORIGINAL, max_text_chars=9)
    assert turbo.params == TURBO_DEFAULTS and original.params == ORIGINAL_DEFAULTS
    multilingual = parse_speech_fields(
        {"text": "x"}, variant=ModelVariant.MULTILINGUAL, max_text_chars=9
    )
    assert multilingual.params == MULTILINGUAL_DEFAULTS  # upstream mtl `generate`'s
    assert multilingual.params.repetition_penalty == 2.0
    assert turbo.chunk_size == 50 and turbo.seed is None and turbo.max_new_tokens is None


def test_given_values_override_and_blanks_mean_default() -> None:
    fields = parse_speech_fields(
        {"text": "x", "temperature": "0.3", "top_k": "", "seed": "12", "chunk_size": "10"},
        variant=ModelVariant.TURBO,
        max_text_chars=9,
    )
    assert fields.params.temperature == 0.3 and fields.params.top_k == TURBO_DEFAULTS.top_k
    assert fields.seed == 12 and fields.chunk_size == 10


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("temperature", "0", "number in (0, 5]"),
        ("chunk_size", "9", "integer in [10, 200]"),
        ("top_k", "1.5", "integer in [0, 10000]"),
        ("exaggeration", "inf", "number in [0, 2]"),
    ],
)
def test_errors_name_the_field_and_range(name: str, value: str, allowed: str) -> None:
    with pytest.raises(FieldError) as caught:
        parse_speech_fields(
            {"text": "x", name: value}, variant=ModelVariant.TURBO, max_text_chars=9
        )
    assert caught.value.field == name and caught.value.allowed == allowed
    assert native_body(caught.value) == {
        "error": str(caught.value),
        "field": name,
        "allowed": allowed,
    }
