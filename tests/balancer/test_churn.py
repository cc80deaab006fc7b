"""Counts under churn: many clients completing, hanging up and losing a worker at random.

Whatever happens, every in-flight count is back at zero afterwards, and every request ended in
exactly one outcome.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx

from tests.balancer.clients import STREAM_LIMITS, StreamResult, stream_events
from tests.balancer.processes import FakeWorker, live_balancer

CLIENTS = 80
CONCURRENCY = 30
OUTCOMES = ("completed", "lost", "client_disconnects", "no_worker", "rejected", "too_large")


async def one_client(
    client: httpx.AsyncClient, url: str, rng: random.Random, gate: asyncio.Semaphore
) -> str:
    """One client's story: "done", "lost" (got the error event), or "hung up"."""
    async with gate:
        kind = rng.choice(["complete", "hang_up_after_chunks", "hang_up_any_time"])
        result = StreamResult()
        if kind == "complete":
            await stream_events(client, url, result=result)
        elif kind == "hang_up_after_chunks":
            await stream_events(client, url, hang_up_after=rng.randint(0, 3), result=result)
        else:
            task = asyncio.create_task(stream_events(client, url, result=result))
            await asyncio.sleep(rng.uniform(0, 0.15))
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if result.last_event == "error":
            return "lost"
        if result.last_event == "done":
            assert result.chunk_ids == [1, 2, 3, 4, 5]  # nothing lost or reordered
            return "done"
        return "hung up"


def test_counts_return_to_zero_after_churn(fast: list[FakeWorker], logs: Path) -> None:
    # A third worker that crashes mid-stream once the churn is under way.
    dying = FakeWorker("--chunks", "5", "--delay", "0.02", "--die-after", "12", log_dir=logs)
    dying.start().wait_ready()
    urls = [*(w.url for w in fast), dying.url]
    try:
        with live_balancer(urls) as lb:

            async def scenario() -> list[str]:
                rng = random.Random(11)
                gate = asyncio.Semaphore(CONCURRENCY)
                async with httpx.AsyncClient(timeout=30, limits=STREAM_LIMITS) as client:
                    return await asyncio.gather(
                        *(one_client(client, lb.url, rng, gate) for _ in range(CLIENTS))
                    )

            endings = asyncio.run(scenario())
            lb.wait_in_flight(0)
            stats = lb.stats()
            assert [w["in_flight"] for w in stats["workers"]] == [0, 0, 0]
            totals = stats["totals"]
            # Clients hanging up at once may not even have reached the balancer.
            assert CLIENTS * 0.8 <= totals["requests"] <= CLIENTS
            assert sum(totals[k] for k in OUTCOMES) == totals["requests"], totals
            assert totals["lost"] == sum(w["lost_mid_stream"] for w in stats["workers"])
            # A client hanging up while its error event is on the way counts as lost here
            # but sees nothing; everyone who saw the error event is counted.
            assert endings.count("lost") <= totals["lost"]
            assert endings.count("done") <= totals["completed"]
            assert stats["workers"][2]["health"] == "unreachable"
    finally:
        dying.stop()
    for worker in fast:
        worker.wait_idle()
