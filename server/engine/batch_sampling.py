"""Sampling for many streams at once, without waiting on the device.

Each function gives every row exactly what that row's own sampling gives (`token_stream.py`,
which mirrors upstream): the same processors in the same order, applied to rows that share
their parameters in one call (every processor works row by row), and a row's token drawn from
its own generator. What changes is only what a GPU would wait for:

- the repetition penalty reads a per-row mask of the tokens seen so far, updated on the
  device, instead of each stream's growing token history (transformers' processor gathers
  and scatters those ids; the values it writes are the same);
- `draw` is `torch.multinomial`'s own algorithm for one sample, without its argument check
  (torch 2.6 reads whether any row sums to zero back to the host, on every call).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TopPLogitsWarper,
)

from server.engine.sampling import SamplingParams
from server.engine.token_stream import turbo_processors

# Scores (rows, vocab) and the tokens each row has seen, (rows, vocab) bool -> processed scores.
Processing = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# The warpers used here never read the token ids they are given.
_NO_IDS = torch.empty(0, dtype=torch.long)


def penalize_repeats(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """`RepetitionPenaltyLogitsProcessor(penalty)` for rows whose history holds the tokens
    marked in `seen`: the same arithmetic on the same entries."""
    penalized = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(seen, penalized, scores)


def turbo_processing(params: SamplingParams) -> Processing:
    """Upstream `inference_turbo`'s processors (`turbo_processors`, in its order)."""
    processors: list[Any] = list(turbo_processors(params))

    def process(scores: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        for processor in processors:
            if isinstance(processor, RepetitionPenaltyLogitsProcessor):
                scores = penalize_repeats(scores, seen, processor.penalty)
            else:
                scores = processor(_NO_IDS, scores)
        return scores

    return process


def original_processing(params: SamplingParams) -> Processing:
    """Upstream `inference`'s processing (the original and multilingual models)."""
    penalty = float(params.repetition_penalty)
    # transformers annotates its processors with LongTensor / FloatTensor, which torch's
    # stubs never produce.
    min_p: Any = MinPLogitsWarper(min_p=params.min_p)
    top_p: Any = TopPLogitsWarper(top_p=params.top_p)

    def process(scores: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        scores = penalize_repeats(scores, seen, penalty)
        if params.temperature != 1.0:
            scores = scores / params.temperature
        scores = min_p(_NO_IDS, scores)
        processed: torch.Tensor = top_p(_NO_IDS, scores)
        return processed

    return process


def draw(
    processed: torch.Tensor, generators: Sequence[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor]:
    """A token per row of `processed` (rows, vocab), from that row's generator, (rows, 1);
    and whether the row had nothing left to sample from (every score -inf), (rows, 1).

    `torch.multinomial(softmax(row), 1, generator)` draws q ~ Exp(1) per entry and takes
    argmax(p / q); so does this, row by row from the same generators."""
    probs = F.softmax(processed, dim=-1)
    noise = torch.empty_like(probs)
    for index, generator in enumerate(generators):
        noise[index : index + 1].exponential_(generator=generator)
    tokens = (probs / noise).argmax(dim=-1, keepdim=True)
    empty = (processed == -float("inf")).all(dim=-1, keepdim=True)
    return tokens, empty
