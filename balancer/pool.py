"""The workers behind the balancer, their state, and routing leases.

A request holds a `Lease` on its worker for its whole life: taking one counts the request in
flight, and `release()` uncounts it exactly once however often it is called, so the counts the
policy reads can neither drift nor go negative (the drift LiteLLM's least-busy router had).
Selecting and counting happen without an `await` in between, so concurrent requests always see
each other's load.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from enum import StrEnum
from typing import Any

from balancer.breaker import BreakerState, CircuitBreaker
from balancer.counters import WorkerCounters
from balancer.policies import Policy


class Health(StrEnum):
    UNKNOWN = "unknown"  # not checked yet
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"  # the worker answers but its model failed to load
    UNREACHABLE = "unreachable"  # no answer to the last check


class Worker:
    def __init__(self, url: str, breaker: CircuitBreaker):
        self.url = url
        self.breaker = breaker
        self.health = Health.UNKNOWN
        self.capacity = 1  # concurrent streams, from the worker's /health
        self.in_flight = 0
        self.counters = WorkerCounters()
        self.reported: dict[str, Any] = {}  # the worker's last /health body
        self.last_check: float | None = None  # wall-clock time of the last health check
        self.last_error: str | None = None

    @property
    def load(self) -> float:
        return self.in_flight / self.capacity

    def available(self, now: float) -> bool:
        return self.health is Health.READY and self.breaker.allows(now)

    def breaker_state(self, now: float) -> BreakerState:
        return self.breaker.state(now)

    def __repr__(self) -> str:
        return f"Worker({self.url!r}, {self.health}, {self.in_flight}/{self.capacity})"


class Lease:
    __slots__ = ("_released", "started", "worker")

    def __init__(self, worker: Worker):
        self.worker = worker
        self.started = time.perf_counter()
        self._released = False
        worker.in_flight += 1

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self.worker.in_flight -= 1
        assert self.worker.in_flight >= 0, f"in-flight count of {self.worker.url} went negative"


class WorkerPool:
    def __init__(
        self,
        urls: Collection[str],
        policy: Policy,
        breaker: Callable[[], CircuitBreaker],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.workers = [Worker(url, breaker()) for url in urls]
        self.policy = policy
        self.clock = clock

    def __iter__(self) -> Iterator[Worker]:
        return iter(self.workers)

    def __len__(self) -> int:
        return len(self.workers)

    def available(self, exclude: Collection[Worker] = ()) -> list[Worker]:
        now = self.clock()
        return [w for w in self.workers if w.available(now) and w not in exclude]

    def route(self, exclude: Collection[Worker] = ()) -> Lease | None:
        """Pick a worker for one request and count it in flight there (None: nobody can)."""
        candidates = self.available(exclude)
        if not candidates:
            return None
        return Lease(self.policy.select(candidates))

    @property
    def in_flight(self) -> int:
        return sum(w.in_flight for w in self.workers)
