"""Admission control: a bounded number of running requests and a bounded waiting line.

A request first *reserves* a place (synchronously, so a full server can answer 503 before any
response starts), then waits for its turn inside the response, where an SSE stream can keep the
connection alive with pings. Every reservation is released exactly once, however the request
ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from server.errors import Overloaded


class Admission:
    def __init__(self, max_active: int, max_queue: int):
        self.max_active = max_active
        self.max_queue = max_queue
        self.active = 0
        self.queued = 0
        self._slots = asyncio.Semaphore(max_active)

    def reserve(self) -> Ticket:
        if self.active + self.queued >= self.max_active + self.max_queue:
            raise Overloaded()
        self.queued += 1
        return Ticket(self)


class Ticket:
    """One request's place: waits for a running slot, then holds it until the block exits."""

    def __init__(self, admission: Admission):
        self._admission = admission
        self._state = "queued"  # queued -> running -> done
        self.wait_seconds = 0.0

    @asynccontextmanager
    async def running(self) -> AsyncIterator[float]:
        admission = self._admission
        started = time.perf_counter()
        try:
            await admission._slots.acquire()
        except BaseException:
            self.release()
            raise
        admission.queued -= 1
        admission.active += 1
        self._state = "running"
        self.wait_seconds = time.perf_counter() - started
        try:
            yield self.wait_seconds
        finally:
            self.release()

    def release(self) -> None:
        """Give the place back; safe to call more than once and in any state."""
        admission = self._admission
        if self._state == "queued":
            admission.queued -= 1
        elif self._state == "running":
            admission.active -= 1
            admission._slots.release()
        self._state = "done"
