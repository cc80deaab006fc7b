"""Sampling parameters shared by the token streamers and the request layer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingParams:
    """How T3 picks speech tokens. Defaults are the seeds' (exaggeration, cfg_weight,
    temperature) and upstream's (the rest); Turbo ignores cfg_weight, exaggeration and min_p,
    as upstream does."""

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 1000
    min_p: float = 0.05
    repetition_penalty: float = 1.2
    cfg_weight: float = 0.5
    exaggeration: float = 0.5


# Upstream's `generate` defaults differ by model: Turbo samples with top_k/top_p (and ignores
# exaggeration, cfg_weight and min_p), the original model with min_p and guidance.
TURBO_DEFAULTS = SamplingParams(temperature=0.8, top_p=0.95, top_k=1000, repetition_penalty=1.2)
ORIGINAL_DEFAULTS = SamplingParams(
    temperature=0.8, top_p=1.0, top_k=0, min_p=0.05, repetition_penalty=1.2
)
# The multilingual model's `generate`: the original model's, with a stronger repetition penalty.
MULTILINGUAL_DEFAULTS = SamplingParams(
    temperature=0.8, top_p=1.0, top_k=0, min_p=0.05, repetition_penalty=2.0
)
