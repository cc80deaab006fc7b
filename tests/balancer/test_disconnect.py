"""A client that hangs up cancels the upstream request: the worker stops generating."""

from __future__ import annotations

import asyncio

import httpx

from tests.balancer.clients import STREAM_LIMITS, StreamResult, stream_events, wait_in_flight
from tests.balancer.processes import FakeWorker, live_balancer, wait_for

DISCONNECTED = 'tts_requests_total{endpoint="synthesize-stream",outcome="disconnected"}'


def test_hanging_up_mid_stream_stops_the_worker(slow: list[FakeWorker]) -> None:
    worker = slow[0]
    before = worker.metric(DISCONNECTED)
    with live_balancer([worker.url]) as lb:

        async def scenario() -> StreamResult:
            async with httpx.AsyncClient(timeout=30, limits=STREAM_LIMITS) as client:
                return await stream_events(client, lb.url, hang_up_after=2)

        result = asyncio.run(scenario())
        assert result.chunk_ids == [1, 2]  # of 200: the stream would run for 10 s
        # The worker notices within a chunk or two and frees its slot.
        wait_for(lambda: worker.metric(DISCONNECTED) == before + 1, 5, "the worker to notice")
        health = worker.health()
        assert health is not None and health["active_streams"] == 0
        lb.wait_in_flight(0)
        stats = lb.worker_stats(worker.url)
        assert stats["client_disconnects"] == 1 and stats["completed"] == 0
        assert lb.stats()["totals"]["client_disconnects"] == 1


def test_hanging_up_before_the_first_byte_releases_the_request(slow: list[FakeWorker]) -> None:
    worker = slow[0]
    with live_balancer([worker.url]) as lb:

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=30, limits=STREAM_LIMITS) as client:
                first = asyncio.create_task(stream_events(client, lb.url, hang_up_after=1000))
                await wait_in_flight(client, lb.url, 1)
                # The worker runs one stream at a time: this one waits there, headers unsent.
                second = asyncio.create_task(stream_events(client, lb.url))
                await wait_in_flight(client, lb.url, 2)
                second.cancel()
                await asyncio.gather(second, return_exceptions=True)
                await wait_in_flight(client, lb.url, 1)
                stats = (await client.get(f"{lb.url}/stats")).json()
                assert stats["workers"][0]["client_disconnects"] == 1
                first.cancel()
                await asyncio.gather(first, return_exceptions=True)
                await wait_in_flight(client, lb.url, 0)

        asyncio.run(scenario())
    worker.wait_idle()
