"""The workers behind the balancer, their state, and routing leases.

A request holds a `Lease` on its worker for its whole life: taking one counts the request in
flight, and `release()` uncounts it exactly once however often it is called, so the counts the
policy reads can neither drift nor go negative (the drift LiteLLM's least-busy router had).
Selecting and counting happen without an `await` in between, so concurrent requests always see
each other's load.

The set of workers may change while the balancer runs (balancer/discovery/): a worker that
joins gets traffic once a health check says it is ready; one that is retired gets no new
requests, but the leases it holds run to their end (and release on it as usual), and it leaves
the pool only once none is left.
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
    DRAINING = "draining"  # shutting down: its running streams finish, it takes no new ones
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
        self.retiring = False  # no longer discovered: no new requests, leaves once idle

    @property
    def load(self) -> float:
        return self.in_flight / self.capacity

    def available(self, now: float) -> bool:
        return self.health is Health.READY and not self.retiring and self.breaker.allows(now)

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
        self._breaker = breaker

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

    def find(self, url: str) -> Worker | None:
        return next((w for w in self.workers if w.url == url), None)

    # Membership changes replace `workers` rather than mutate it, so a loop over the pool that
    # is still running (a round of health checks) keeps the list it started with.

    def add(self, url: str) -> Worker | None:
        """Take `url` in: a new worker, unchecked, so it gets no traffic before a health check
        says it is ready; or a retiring one, back in rotation. None: it is in already."""
        worker = self.find(url)
        if worker is None:
            worker = Worker(url, self._breaker())
            self.workers = [*self.workers, worker]
            return worker
        if worker.retiring:
            worker.retiring = False
            return worker
        return None

    def retire(self, url: str) -> Worker | None:
        """No new requests for `url`; the ones it runs finish. None: not in, or retiring."""
        worker = self.find(url)
        if worker is None or worker.retiring:
            return None
        worker.retiring = True
        return worker

    def remove_idle_retired(self) -> list[Worker]:
        """Take out the retiring workers with nothing in flight (streams and sockets alike hold
        a lease), so they leave /stats and /metrics."""
        gone = [w for w in self.workers if w.retiring and w.in_flight == 0]
        if gone:
            self.workers = [w for w in self.workers if w not in gone]
        return gone
