"""Batched T3 decoding: each stream's logits match its solo logits, whoever else is decoding."""

from __future__ import annotations

from collections.abc import Hashable

import pytest
import torch

from server.engine.conditionals import builtin_voice
from server.engine.loading import LoadedModel
from server.engine.sampling import ORIGINAL_DEFAULTS, TURBO_DEFAULTS, SamplingParams
from server.engine.t3_batch import OriginalBatch, T3Batch, TurboBatch
from server.engine.text import normalize_punctuation
from server.engine.token_stream import turbo_speech_tokens

TEXTS = {
    "a": "A short one.",
    "b": "This second stream has a noticeably longer prompt than the first.",
    "c": "Third.",
}
pytestmark = pytest.mark.model


def _text_tokens(model: LoadedModel, key: str) -> torch.Tensor:
    tokens = model.text_to_tokens(normalize_punctuation(TEXTS[key]))
    if not model.meanflow:  # the original model wants start/stop text tokens
        hp = model.t3.hp
        tokens = torch.nn.functional.pad(tokens, (1, 0), value=hp.start_text_token)
        tokens = torch.nn.functional.pad(tokens, (0, 1), value=hp.stop_text_token)
    return tokens


def _add(
    batch: T3Batch,
    model: LoadedModel,
    key: str,
    params: SamplingParams,
    cond_key: Hashable | None = None,
) -> int:
    voice = builtin_voice(model)
    assert voice is not None
    t3_cond, _ = voice.for_request(0.5, model.device)
    seed = ord(key)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    return batch.add(key, t3_cond, _text_tokens(model, key), params, generator, cond_key)


def _run(
    model: LoadedModel,
    batch_type: type[T3Batch],
    params: SamplingParams,
    schedule: list[str],
    batch: T3Batch | None = None,
) -> dict[Hashable, tuple[list[int], list[torch.Tensor]]]:
    """Run a schedule: '+k' adds stream k, '-k' removes it, 's' steps every stream; '*k' adds
    stream k with the voice's conditioning marked as shared (its prefill cached)."""
    if batch is None:
        batch = batch_type(model.t3, record_logits=True)
    tokens: dict[Hashable, list[int]] = {}
    logits: dict[Hashable, list[torch.Tensor]] = {}
    for action in schedule:
        if action.startswith(("+", "*")):
            key = action[1:]
            cond_key = "builtin" if action.startswith("*") else None
            tokens[key] = [_add(batch, model, key, params, cond_key)]
        elif action.startswith("-"):
            key = action[1:]
            logits[key] = batch.rows[batch.keys.index(key)].logits
            batch.remove(key)
        else:
            for stepped, token in batch.step().items():
                tokens[stepped].append(token)
    for row in batch.rows:
        logits[row.key] = row.logits
    return {key: (tokens[key], logits[key]) for key in tokens}


def _assert_matches_solo(
    model: LoadedModel,
    batch_type: type[T3Batch],
    params: SamplingParams,
    together: dict[Hashable, tuple[list[int], list[torch.Tensor]]],
) -> None:
    for key, (tokens, logits) in together.items():
        solo_tokens, solo_logits = _run(
            model, batch_type, params, [f"+{key}"] + ["s"] * (len(tokens) - 1)
        )[key]
        assert tokens == solo_tokens, key
        for ours, alone in zip(logits, solo_logits, strict=True):
            assert torch.allclose(ours, alone, atol=2e-3, rtol=1e-3), key


def test_turbo_batch_of_one_gives_the_solo_tokens(turbo_model: LoadedModel) -> None:
    params = TURBO_DEFAULTS
    batched = _run(turbo_model, TurboBatch, params, ["+a"] + ["s"] * 9)["a"][0]
    voice = builtin_voice(turbo_model)
    assert voice is not None
    t3_cond, _ = voice.for_request(0.5, turbo_model.device)
    solo = list(
        turbo_speech_tokens(
            turbo_model.t3,
            t3_cond,
            _text_tokens(turbo_model, "a"),
            params,
            torch.Generator(device=turbo_model.device).manual_seed(ord("a")),
            10,
        )
    )
    assert batched == solo


def test_turbo_streams_joining_and_leaving_keep_their_solo_logits(
    turbo_model: LoadedModel,
) -> None:
    schedule = ["+a", "s", "s", "+b", "s", "s", "+c", "s", "-a", "s", "s", "-b", "s"]
    together = _run(turbo_model, TurboBatch, TURBO_DEFAULTS, schedule)
    assert [len(t) for t, _ in together.values()] == [6, 6, 5]
    _assert_matches_solo(turbo_model, TurboBatch, TURBO_DEFAULTS, together)


def test_original_streams_with_guidance_keep_their_solo_logits(
    original_model: LoadedModel,
) -> None:
    schedule = ["+a", "s", "+b", "s", "s", "-a", "s"]
    together = _run(original_model, OriginalBatch, ORIGINAL_DEFAULTS, schedule)
    _assert_matches_solo(original_model, OriginalBatch, ORIGINAL_DEFAULTS, together)


def test_each_stream_draws_from_its_own_generator(turbo_model: LoadedModel) -> None:
    # b's tokens are the same whether or not a is decoding beside it.
    alone = _run(turbo_model, TurboBatch, TURBO_DEFAULTS, ["+b", "s", "s", "s"])["b"][0]
    beside = _run(turbo_model, TurboBatch, TURBO_DEFAULTS, ["+a", "+b", "s", "s", "s"])["b"][0]
    assert alone == beside


@pytest.mark.parametrize("variant", ["turbo", "original"])
def test_streams_of_one_voice_share_its_prefill_and_keep_their_solo_logits(
    variant: str, request: pytest.FixtureRequest
) -> None:
    model: LoadedModel = request.getfixturevalue(f"{variant}_model")
    batch_type: type[T3Batch] = TurboBatch if variant == "turbo" else OriginalBatch
    params = TURBO_DEFAULTS if variant == "turbo" else ORIGINAL_DEFAULTS
    batch = batch_type(model.t3, record_logits=True)
    together = _run(model, batch_type, params, ["*a", "s", "*b", "s", "s", "*c", "s"], batch)
    assert batch.prefix_hits == 2  # b and c reused a's conditioning
    # Solo runs prefill everything from scratch: same tokens, logits equal within rounding.
    _assert_matches_solo(model, batch_type, params, together)


def test_the_prefix_cache_keeps_only_the_most_recent_voices(turbo_model: LoadedModel) -> None:
    batch = TurboBatch(turbo_model.t3, prefix_cache_size=1)
    for name, voice_key in (("a", "v1"), ("b", "v2"), ("c", "v1")):
        _add(batch, turbo_model, name, TURBO_DEFAULTS, voice_key)
    assert batch.prefix_hits == 0  # v1 was evicted by v2
    assert len(batch._prefixes) == 1
