"""Sampling many streams at once gives each stream exactly what its own sampling gives: the
processors row by row (rows of different parameters and histories), the draw token for token
with `torch.multinomial` from each row's generator, and whole batches of streams with
different parameters their solo tokens (tiny T3s, `tiny_t3.py`)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TopPLogitsWarper,
)

from server.engine.batch_sampling import (
    draw,
    original_processing,
    penalize_repeats,
    turbo_processing,
)
from server.engine.loading import ModelVariant
from server.engine.sampling import (
    MULTILINGUAL_DEFAULTS,
    ORIGINAL_DEFAULTS,
    TURBO_DEFAULTS,
    SamplingParams,
)
from server.engine.t3_batch import OriginalBatch, T3Batch, TurboBatch
from server.engine.token_stream import (
    original_speech_tokens,
    turbo_processors,
    turbo_speech_tokens,
)
from tests.conftest import TEST_DEVICE
from tests.engine.tiny_t3 import conditioning, text_tokens, tiny_t3

VOCAB = 6563
PARAMS = [
    TURBO_DEFAULTS,
    ORIGINAL_DEFAULTS,
    MULTILINGUAL_DEFAULTS,
    SamplingParams(temperature=1.0, top_p=1.0, top_k=0, min_p=0.0, repetition_penalty=1.0),
    SamplingParams(temperature=0.3, top_p=0.5, top_k=20, min_p=0.2, repetition_penalty=0.8),
]


def _rows(count: int, seed: int) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Scores (some -inf), each row's history (different lengths, tokens repeated) and the
    tokens each history holds, (count, VOCAB) bool."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(count, VOCAB, generator=generator) * 4
    scores[0, :100] = -float("inf")
    histories = [
        torch.randint(0, 300, (1, 1 + 7 * row), generator=generator) for row in range(count)
    ]
    seen = torch.zeros(count, VOCAB, dtype=torch.bool)
    for row, history in enumerate(histories):
        seen[row, history[0]] = True
    return scores, histories, seen


@pytest.mark.parametrize("penalty", [1.2, 2.0, 0.8, 1.0])
def test_the_repetition_penalty_marks_what_transformers_gathers(penalty: float) -> None:
    scores, histories, seen = _rows(4, seed=1)
    together = penalize_repeats(scores, seen, penalty)
    for row, history in enumerate(histories):
        alone = RepetitionPenaltyLogitsProcessor(penalty)(history, scores[row : row + 1])
        assert torch.equal(together[row : row + 1], alone)


def _original_processors(params: SamplingParams) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    """Upstream `inference`'s processing of one row, as `token_stream.py` does it."""

    def process(ids: Any, scores: torch.Tensor) -> torch.Tensor:
        scores = RepetitionPenaltyLogitsProcessor(float(params.repetition_penalty))(ids, scores)
        if params.temperature != 1.0:
            scores = scores / params.temperature
        scores = MinPLogitsWarper(min_p=params.min_p)(ids, scores)  # type: ignore[arg-type]
        processed: torch.Tensor = TopPLogitsWarper(top_p=params.top_p)(ids, scores)
        return processed

    return process


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("model", ["turbo", "original"])
def test_rows_processed_together_get_what_each_gets_alone(
    model: str, params: SamplingParams
) -> None:
    scores, histories, seen = _rows(4, seed=2)
    if model == "turbo":
        together = turbo_processing(params)(scores, seen)
        alone: Callable[[Any, Any], torch.Tensor] = turbo_processors(params)
    else:
        together = original_processing(params)(scores, seen)
        alone = _original_processors(params)
    for row, history in enumerate(histories):
        assert torch.equal(together[row : row + 1], alone(history, scores[row : row + 1])), row


def test_each_row_draws_what_torch_multinomial_draws_from_its_generator() -> None:
    ours = [torch.Generator().manual_seed(seed) for seed in (3, 4, 5)]
    theirs = [torch.Generator().manual_seed(seed) for seed in (3, 4, 5)]
    for step in range(20):
        scores, _, _ = _rows(3, seed=10 + step)
        tokens, empty = draw(scores, ours)
        assert not empty.any()
        for row, generator in enumerate(theirs):
            probs = F.softmax(scores[row : row + 1], dim=-1)
            assert torch.equal(tokens[row], torch.multinomial(probs, 1, generator=generator)[0])
    for mine, upstream in zip(ours, theirs, strict=True):
        assert torch.equal(mine.get_state(), upstream.get_state())


def test_a_row_with_nothing_to_sample_from_is_flagged() -> None:
    scores = torch.randn(3, VOCAB)
    scores[1] = -float("inf")
    _, empty = draw(scores, [torch.Generator().manual_seed(row) for row in range(3)])
    assert empty.view(-1).tolist() == [False, True, False]


# Streams of different parameters (and guidance widths) in one batch.
MIXED = [
    ORIGINAL_DEFAULTS,
    SamplingParams(temperature=0.5, top_p=0.9, min_p=0.1, repetition_penalty=1.5, cfg_weight=0),
    MULTILINGUAL_DEFAULTS,
    ORIGINAL_DEFAULTS,
]
STEPS = 8


@pytest.mark.parametrize("variant", [ModelVariant.TURBO, ModelVariant.MULTILINGUAL])
def test_streams_of_different_parameters_keep_their_solo_tokens(variant: ModelVariant) -> None:
    t3 = tiny_t3(variant)
    t3_cond = conditioning()
    turbo = variant is ModelVariant.TURBO
    params = [TURBO_DEFAULTS, *PARAMS[3:], TURBO_DEFAULTS] if turbo else MIXED
    batch: T3Batch = TurboBatch(t3) if turbo else OriginalBatch(t3, alignment_checks=True)
    tokens: dict[Hashable, list[int]] = {}
    for index, stream_params in enumerate(params):
        generator = torch.Generator(device=TEST_DEVICE).manual_seed(index)
        text = text_tokens(t3, 6 + 4 * index)
        tokens[index] = [batch.add(index, t3_cond, text, stream_params, generator)]
        if index == 2:
            batch.remove(1)  # a stream leaving while others decode
        for key, token in batch.step().items():
            tokens[key].append(token)
    for _ in range(STEPS):
        for key, token in batch.step().items():
            tokens[key].append(token)
    stop = t3.hp.stop_speech_token
    for index, stream_params in enumerate(params):
        generator = torch.Generator(device=TEST_DEVICE).manual_seed(index)
        text = text_tokens(t3, 6 + 4 * index)
        # The solo generators end before a stop token; the batch returns it (and carries on).
        ours = tokens[index]
        if stop in ours:
            ours = ours[: ours.index(stop)]
        count = len(tokens[index])
        solo: Any
        if turbo:
            solo = turbo_speech_tokens(t3, t3_cond, text, stream_params, generator, count)
        else:
            solo = original_speech_tokens(
                t3, t3_cond, text, stream_params, generator, count, alignment_checks=True
            )
        assert list(solo) == ours, index
