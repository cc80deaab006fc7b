"""Concurrent streams per key: a stream holds a `StreamSlot` from the moment it is let in until
its response or socket ends, whichever way (completed, failed, client gone). `release()`
gives it back exactly once however often it is called, as `balancer.pool.Lease` does for a
worker's load, so a key's count can neither drift nor go negative."""

from __future__ import annotations

from access.keys import ApiKey
from access.usage import KeyUsage


class StreamSlot:
    __slots__ = ("_released", "usage")

    def __init__(self, usage: KeyUsage):
        self.usage = usage
        self._released = False
        usage.streams_open += 1
        usage.streams += 1

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self.usage.streams_open -= 1
        assert self.usage.streams_open >= 0, "a key's open streams went negative"


class StreamLimits:
    def __init__(self, default_limit: int | None):
        self.default_limit = default_limit  # None: no limit unless a key sets one

    def limit(self, key: ApiKey) -> int | None:
        return key.max_streams if key.max_streams is not None else self.default_limit

    def take(self, key: ApiKey, usage: KeyUsage) -> StreamSlot | None:
        """A slot for one more stream of `key`, or None when all of its streams are in use.
        Checking and counting happen without an await between them."""
        limit = self.limit(key)
        if limit is not None and usage.streams_open >= limit:
            return None
        return StreamSlot(usage)
