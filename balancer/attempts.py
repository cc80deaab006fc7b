"""Trying workers in turn until one takes a request: the failover loop that HTTP requests and
WebSockets share. Each attempt holds its worker's lease, released on every path; a worker that
fails or answers 503 before anything reached the client is swapped for another, at most
`max_attempts` times."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum

from balancer.pool import Lease, Worker, WorkerPool


class Attempt(Enum):
    RELAYED = "relayed"  # the client got this worker's response (complete or cut short)
    FAILED = "failed"  # the worker failed before the first byte: try another
    REJECTED = "rejected"  # the worker answered 503 before the first byte: try another


class Rejection:
    """A worker's 503, kept to pass through if no other worker takes the request."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def message(self) -> str:
        """What the worker said, from any of the APIs' error shapes (or the status alone)."""
        try:
            payload = json.loads(self.body)
        except ValueError:
            payload = None
        while isinstance(payload, dict):  # {"error": ...}, {"error": {"message": ...}}, ...
            payload = next(
                (payload[k] for k in ("message", "error", "detail") if k in payload), None
            )
        if isinstance(payload, str) and payload:
            return f"worker answered {self.status}: {payload}"
        return f"worker answered {self.status}"


@dataclass
class Attempts:
    """How trying went: served, or why not (the last 503 to pass on, the last failure)."""

    relayed: bool = False
    tried: list[Worker] = field(default_factory=list)
    rejection: Rejection | None = None
    failure: str = ""

    def refusal_message(self, accepted: str) -> str:
        """Why no worker took the request, for the client's 503."""
        if self.tried:
            return f"every worker tried failed before {accepted} (last: {self.failure})"
        return "no healthy worker is available"


async def try_workers(
    pool: WorkerPool,
    max_attempts: int,
    attempt: Callable[[Lease], Awaitable[Attempt | Rejection]],
    on_failover: Callable[[Worker, Worker], None],
) -> Attempts:
    """`attempt` on the routed workers in turn until one relays; `on_failover(left, next)`
    counts each swap."""
    attempts = Attempts()
    for _ in range(max_attempts):
        lease = pool.route(exclude=attempts.tried)
        if lease is None:
            break
        if attempts.tried:
            on_failover(attempts.tried[-1], lease.worker)
        attempts.tried.append(lease.worker)
        try:
            outcome = await attempt(lease)
        finally:
            lease.release()
        if outcome is Attempt.RELAYED:
            attempts.relayed = True
            return attempts
        if isinstance(outcome, Rejection):
            attempts.rejection = outcome
        else:
            attempts.failure = lease.worker.last_error or "failed"
    return attempts
