"""A per-worker circuit breaker: failures take a worker out of rotation, answers bring it back.

A refused connection is decisive (nothing is listening) and opens the breaker at once; other
failures (a stream cut short, a read timeout) open it after `failure_threshold` in a row, so
one unlucky request does not drain a worker. Only traffic resets that count: a worker whose
`/health` answers but whose streams keep failing still goes out. An open breaker stays open
for `cooldown` seconds; after that the next answer to a health check closes it again.
"""

from __future__ import annotations

from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"  # in rotation
    OPEN = "open"  # out of rotation, cooling down
    HALF_OPEN = "half_open"  # cooled down: the next answer re-admits the worker


class CircuitBreaker:
    def __init__(self, failure_threshold: int, cooldown: float):
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.trips = 0  # times it opened, for /stats

    def state(self, now: float) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if now - self.opened_at < self.cooldown:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allows(self, now: float) -> bool:
        return self.opened_at is None

    def record_failure(self, now: float) -> None:
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.failure_threshold:
            self.trip(now)

    def trip(self, now: float) -> None:
        """Open now (or restart the cooldown of an open breaker)."""
        if self.opened_at is None:
            self.trips += 1
        self.opened_at = now
        self.consecutive_failures = max(self.consecutive_failures, self.failure_threshold)

    def record_success(self) -> None:
        """A request succeeded: the failures so far were not in a row."""
        if self.opened_at is None:
            self.consecutive_failures = 0

    def record_answer(self, now: float) -> None:
        """The worker answered a health check: re-admit it once the cooldown is over."""
        if self.opened_at is not None and now - self.opened_at >= self.cooldown:
            self.opened_at = None
            self.consecutive_failures = 0
