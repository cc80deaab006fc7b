"""Active health checks: every worker's `/health`, every `interval` seconds.

A check sets the worker's health (only `ready` workers get traffic and count in the capacity
/stats shows, so a worker still loading its model, draining before it exits or not answering
gets none) and its capacity, and tells its breaker that it answered, which is what re-admits a
worker the breaker took out of rotation after failures.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from balancer.pool import Health, Worker, WorkerPool
from balancer.tasks import cancel_and_wait

logger = logging.getLogger("balancer")

# What a worker's /health may say; anything else counts as failed.
REPORTED = frozenset({Health.LOADING, Health.READY, Health.DRAINING, Health.FAILED})


class HealthChecker:
    def __init__(self, pool: WorkerPool, client: httpx.AsyncClient, interval: float):
        self.pool = pool
        self.client = client
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def check(self, worker: Worker) -> None:
        previous = worker.health
        try:
            response = await self.client.get(f"{worker.url}/health")
            body = response.json()
            if not isinstance(body, dict):
                raise ValueError("the /health body is not a JSON object")
        except (httpx.HTTPError, ValueError) as exc:
            worker.health = Health.UNREACHABLE
            worker.last_error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        else:
            status = body.get("status")
            worker.health = Health(status) if status in REPORTED else Health.FAILED
            worker.reported = body
            worker.last_error = body.get("error") if worker.health is Health.FAILED else None
            capacity = body.get("capacity")
            if isinstance(capacity, int) and capacity > 0:
                worker.capacity = capacity
            worker.breaker.record_answer(self.pool.clock())
        worker.last_check = time.time()
        if worker.health is not previous:
            log = logger.info if worker.health is Health.READY else logger.warning
            log("worker %s: %s -> %s", worker.url, previous, worker.health)

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(w) for w in self.pool))

    async def run(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="health-checks")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
