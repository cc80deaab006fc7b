"""Load-balancing policies: each picks one worker among the candidates the pool offers.

The pool only offers workers that are ready and whose breaker is closed; a policy only looks at
their load (`in_flight / capacity`), so it never has to know about health.
"""

from __future__ import annotations

from collections.abc import Callable

from balancer.policies.base import Loaded, Policy
from balancer.policies.least_loaded import LeastLoaded
from balancer.policies.power_of_two import PowerOfTwo

POLICIES: dict[str, Callable[[], Policy]] = {
    LeastLoaded.name: LeastLoaded,
    PowerOfTwo.name: PowerOfTwo,
}


def make_policy(name: str) -> Policy:
    try:
        return POLICIES[name]()
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; one of {', '.join(POLICIES)}") from None


__all__ = ["POLICIES", "LeastLoaded", "Loaded", "Policy", "PowerOfTwo", "make_policy"]
