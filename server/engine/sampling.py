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
