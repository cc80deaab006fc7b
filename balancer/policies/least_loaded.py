"""Least loaded: the candidate with the lowest in-flight/capacity, round robin among ties.

Exact, which is what a handful of GPU workers need: a stream costs seconds of device time, so
sending one to a busier worker is never worth the few microseconds saved by sampling. Ties
rotate, so idle workers take turns instead of the first one taking every short request.
"""

from __future__ import annotations

from collections.abc import Sequence

from balancer.policies.base import W


class LeastLoaded:
    name = "least-loaded"

    def __init__(self) -> None:
        self._turn = 0

    def select(self, candidates: Sequence[W]) -> W:
        # Equal fractions are equal floats (division is correctly rounded), so 1/2 ties 2/4.
        lowest = min(c.load for c in candidates)
        tied = [c for c in candidates if c.load == lowest]
        chosen = tied[self._turn % len(tied)]
        self._turn += 1
        return chosen
