"""Keeps the pool equal to what the sources list, asking them every `interval` seconds.

The pool's workers are the union of every source's last answer: a source that cannot answer
(`SourceUnavailable`) keeps what it gave before, so a DNS hiccup or a file being replaced never
empties the pool. A worker that appears joins, and is health-checked at once (it gets traffic
once it says it is ready, like a worker still loading). One that no source lists any more
retires: no new requests, the ones it runs (streams and sockets) finish, and it leaves the pool,
/stats and /metrics at the first look after it became idle. Listed again before that, it is
back in rotation with its counters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from balancer.discovery.base import SourceUnavailable, WorkerSource
from balancer.discovery.static import StaticSource
from balancer.pool import Worker, WorkerPool
from balancer.tasks import cancel_and_wait

logger = logging.getLogger("balancer")

Joined = Callable[[Worker], Awaitable[None]]


class Discovery:
    def __init__(
        self,
        pool: WorkerPool,
        sources: Sequence[WorkerSource],
        interval: float,
        joined: Joined | None = None,
    ):
        self.pool = pool
        self.sources = list(sources)
        self.interval = interval
        self.joined = joined  # what a new worker goes through first: a health check
        self._listed: dict[int, frozenset[str]] = {}  # each source's last answer, by index
        self._failing: dict[int, str] = {}  # each failing source's last problem, logged once
        self._task: asyncio.Task[None] | None = None

    @property
    def watched(self) -> bool:
        """Whether the workers may change at all (`--workers` alone never does)."""
        return any(not isinstance(source, StaticSource) for source in self.sources)

    async def refresh(self) -> None:
        """Ask every source, then add, retire and remove workers to match."""
        await asyncio.gather(*(self._ask(i, source) for i, source in enumerate(self.sources)))
        listed = frozenset[str]().union(*self._listed.values())
        joined: list[Worker] = []
        for url in sorted(listed):
            known = self.pool.find(url)
            worker = self.pool.add(url)
            if worker is None:
                continue
            if known is None:
                logger.info("worker %s joined; in rotation once its /health says ready", url)
                joined.append(worker)
            else:
                logger.info("worker %s is listed again: back in rotation", url)
        for worker in list(self.pool):
            if worker.url not in listed and self.pool.retire(worker.url) is not None:
                logger.info(
                    "worker %s is no longer listed: retiring, %d request(s) still running",
                    worker.url,
                    worker.in_flight,
                )
        for worker in self.pool.remove_idle_retired():
            logger.info("worker %s left the pool", worker.url)
        if joined and self.joined is not None:
            await asyncio.gather(*(self.joined(worker) for worker in joined))

    async def _ask(self, index: int, source: WorkerSource) -> None:
        try:
            urls = await source.discover()
        except SourceUnavailable as exc:
            problem = str(exc)
            if self._failing.get(index) != problem:  # not again every interval
                kept = len(self._listed.get(index, ()))
                logger.warning("%s: %s; keeping its last %d worker(s)", source.name, problem, kept)
            self._failing[index] = problem
            return
        if self._failing.pop(index, None) is not None:
            logger.info("%s: answering again, %d worker(s)", source.name, len(urls))
        self._listed[index] = urls

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except Exception:  # a bug here must not stop discovery for the balancer's life
                logger.exception("worker discovery failed; trying again")

    def start(self) -> None:
        if self.watched:
            self._task = asyncio.create_task(self.run(), name="worker-discovery")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
