"""Routing: each request pinned to the least-loaded worker, relative to capacity, fairly."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from contextlib import ExitStack

import httpx

from tests.balancer.clients import STREAM_LIMITS, cancel_all, stream_events, wait_in_flight
from tests.balancer.conftest import stream
from tests.balancer.processes import FakeWorker, live_balancer
from tests.balancer.upstreams import endless
from tests.live_server import LiveServer


def test_concurrent_streams_spread_evenly(slow: list[FakeWorker]) -> None:
    with live_balancer([w.url for w in slow]) as lb:

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=30, limits=STREAM_LIMITS) as client:
                tasks = [asyncio.create_task(stream_events(client, lb.url)) for _ in range(8)]
                counts = await wait_in_flight(client, lb.url, 8)
                assert sorted(counts.values()) == [4, 4]
                await cancel_all(tasks)
                counts = await wait_in_flight(client, lb.url, 0)
                assert set(counts.values()) == {0}

        asyncio.run(scenario())


def test_load_is_relative_to_capacity() -> None:
    with ExitStack() as stack:
        small = stack.enter_context(LiveServer(endless(capacity=1)))
        big = stack.enter_context(LiveServer(endless(capacity=3)))
        lb = stack.enter_context(live_balancer([small.url, big.url]))

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=30, limits=STREAM_LIMITS) as client:
                tasks = []
                for expected in range(1, 9):
                    tasks.append(asyncio.create_task(stream_events(client, lb.url)))
                    await wait_in_flight(client, lb.url, expected)
                counts = await wait_in_flight(client, lb.url, 8)
                assert counts == {small.url: 2, big.url: 6}
                await cancel_all(tasks)
                await wait_in_flight(client, lb.url, 0)

        asyncio.run(scenario())


def test_idle_workers_take_turns(fast: list[FakeWorker]) -> None:
    with live_balancer([w.url for w in fast]) as lb:
        served = [stream(lb.url)[0].headers["x-upstream-worker"] for _ in range(10)]
        assert Counter(served) == {fast[0].url: 5, fast[1].url: 5}
        assert all(a != b for a, b in itertools.pairwise(served))


def test_a_stream_stays_on_one_worker_from_start_to_end(fast: list[FakeWorker]) -> None:
    with live_balancer([w.url for w in fast]) as lb:

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=30, limits=STREAM_LIMITS) as client:
                results = await asyncio.gather(*(stream_events(client, lb.url) for _ in range(6)))
            for result in results:
                assert result.status == 200 and result.worker in (fast[0].url, fast[1].url)
                assert result.chunk_ids == [1, 2, 3, 4, 5] and result.last_event == "done"

        asyncio.run(scenario())
        stats = lb.stats()
        assert stats["totals"]["completed"] == 6
        assert sum(w["requests"] for w in stats["workers"]) == 6  # no request was split
