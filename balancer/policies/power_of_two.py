"""Power of two choices (Envoy's LEAST_REQUEST, Ray Serve): the less loaded of two random
candidates.

For large pools, or several balancers in front of the same workers: it avoids every balancer
herding onto the same momentarily idle worker, at the cost of sometimes missing the best one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from balancer.policies.base import W


class PowerOfTwo:
    name = "power-of-two"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def select(self, candidates: Sequence[W]) -> W:
        if len(candidates) == 1:
            return candidates[0]
        a, b = self._rng.sample(range(len(candidates)), 2)
        first, second = candidates[a], candidates[b]
        return second if second.load < first.load else first
