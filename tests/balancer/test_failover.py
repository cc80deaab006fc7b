"""Failover: another worker before the first byte, an error event after it, bounded retries."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.balancer.clients import STREAM_LIMITS, apoll, stream_events
from tests.balancer.conftest import stream
from tests.balancer.processes import FakeWorker, fake_workers, free_port, live_balancer
from tests.balancer.upstreams import answering, cut_off, stalling_stream
from tests.live_server import LiveServer
from tests.sse import events_in

SHORT = ("--chunks", "5", "--delay", "0.02")


@pytest.fixture(scope="module")
def special(logs: Path) -> Iterator[dict[str, FakeWorker]]:
    """Workers that misbehave once: each test uses its own."""
    specs = {
        "dies_after_headers": (*SHORT, "--die-after", "0"),
        "dies_after_two_chunks": (*SHORT, "--die-after", "2"),
        "busy": ("--chunks", "200", "--delay", "0.05", "--max-streams", "1", "--max-queue", "0"),
    }
    with fake_workers(*specs.values(), log_dir=logs) as workers:
        yield dict(zip(specs, workers, strict=True))


def test_a_worker_dying_before_the_first_byte_is_replaced(
    special: dict[str, FakeWorker], fast: list[FakeWorker]
) -> None:
    dying, healthy = special["dies_after_headers"], fast[0]
    # Listed first, so the first request goes to it (idle workers take turns in order).
    with live_balancer([dying.url, healthy.url], health_interval=60) as lb:
        response, events = stream(lb.url)
        assert response.status_code == 200
        assert response.headers["x-upstream-worker"] == healthy.url
        assert [e.event for e in events] == ["audio_chunk"] * 5 + ["done"]
        stats = lb.stats()
        assert stats["totals"]["failovers"] == 1
        lost = lb.worker_stats(dying.url)
        assert (lost["requests"], lost["errors"], lost["failovers"]) == (1, 1, 1)
        assert lb.worker_stats(healthy.url)["completed"] == 1
        assert stats["balancer"]["in_flight"] == 0


PING = b": ping - 2026-11-30 08:00:00\r\n\r\n"  # what sse-starlette sends while a request waits


def raw_stream(url: str) -> tuple[httpx.Response, str]:
    with httpx.stream("POST", f"{url}/synthesize-stream", data={"text": "Hi."}, timeout=30) as r:
        return r, r.read().decode()


def test_a_worker_lost_after_only_keep_alives_hands_the_stream_to_another(
    fast: list[FakeWorker],
) -> None:
    # The client got the 200 and a ping (the request was waiting in the worker's queue), then
    # the worker died: nothing of its audio was sent, so another worker continues the body.
    with (
        LiveServer(cut_off(PING)) as dying,
        live_balancer([dying.url, fast[0].url], health_interval=60) as lb,
    ):
        response, body = raw_stream(lb.url)
        assert response.status_code == 200
        assert response.headers["x-upstream-worker"] == dying.url  # sent with the headers
        assert body.startswith(PING.decode())
        assert f": continued on worker {fast[0].url}\r\n\r\n" in body
        events = events_in(body)
        assert [e.event for e in events] == ["audio_chunk"] * 5 + ["done"]
        assert [e.json()["chunk_id"] for e in events[:5]] == [1, 2, 3, 4, 5]
        stats = lb.stats()["totals"]
        assert (stats["failovers"], stats["lost"], stats["completed"]) == (1, 0, 1)
        assert lb.worker_stats(dying.url)["lost_mid_stream"] == 0
        lb.wait_in_flight(0)


@pytest.mark.parametrize("other", ["busy", "none"])
def test_a_stream_lost_after_keep_alives_that_no_worker_can_continue_ends_in_an_error_event(
    other: str,
) -> None:
    busy = b'{"error": "the server is busy: 4 streams running, 0 waiting"}'
    with ExitStack() as stack:
        dying = stack.enter_context(LiveServer(cut_off(PING)))
        urls = [dying.url]
        if other == "busy":
            full = answering(503, busy, path="/synthesize-stream")
            urls.append(stack.enter_context(LiveServer(full)).url)
        lb = stack.enter_context(live_balancer(urls, health_interval=60))
        response, body = raw_stream(lb.url)
        assert response.status_code == 200
        events = events_in(body)
        assert [e.event for e in events] == ["error"]
        message = events[0].json()["error"]
        assert f"worker lost mid-stream ({dying.url}" in message
        if other == "busy":
            assert "worker answered 503: the server is busy" in message
        else:
            assert "every worker tried failed before audio" in message
        assert lb.stats()["totals"]["lost"] == 1
        lb.wait_in_flight(0)


def test_a_full_worker_is_skipped_and_its_503_passed_on_when_all_are_full(
    special: dict[str, FakeWorker], fast: list[FakeWorker]
) -> None:
    busy = special["busy"]

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=30, limits=STREAM_LIMITS) as client:
            # Fill the worker behind the balancer's back: the balancer still sees it idle.
            hog = asyncio.create_task(stream_events(client, busy.url))

            async def full() -> bool:
                health = (await client.get(f"{busy.url}/health")).json()
                return bool(health["active_streams"] == 1)

            await apoll(full, what="the busy worker to be full")
            with live_balancer([busy.url, fast[0].url]) as lb:
                result = await stream_events(client, lb.url)
                assert result.status == 200 and result.worker == fast[0].url
                assert result.last_event == "done"
                busy_stats = lb.worker_stats(busy.url)
                assert busy_stats["rejected"] == 1 and busy_stats["failovers"] == 1
                assert busy_stats["errors"] == 0  # busy is not broken
            with live_balancer([busy.url]) as lb:
                response = await client.post(f"{lb.url}/synthesize-stream", data={"text": "Hi"})
                assert response.status_code == 503
                assert response.headers["retry-after"] and "busy" in response.json()["error"]
                assert lb.stats()["totals"]["rejected"] == 1
            hog.cancel()
            await asyncio.gather(hog, return_exceptions=True)

    asyncio.run(scenario())


def test_a_worker_lost_mid_stream_ends_the_stream_with_an_error_event(
    special: dict[str, FakeWorker],
) -> None:
    dying = special["dies_after_two_chunks"]
    with live_balancer([dying.url], health_interval=60) as lb:
        response, events = stream(lb.url)
        assert response.status_code == 200
        assert [e.event for e in events] == ["audio_chunk", "audio_chunk", "error"]
        assert [e.json()["chunk_id"] for e in events[:2]] == [1, 2]
        assert "worker lost" in events[-1].json()["error"]
        stats = lb.worker_stats(dying.url)
        assert stats["lost_mid_stream"] == 1 and stats["in_flight"] == 0
        assert lb.stats()["totals"]["lost"] == 1


def test_a_frozen_worker_ends_the_stream_after_the_idle_timeout() -> None:
    stop = threading.Event()
    first = b'event: audio_chunk\r\ndata: {"chunk_id": 1}\r\n\r\n'
    with (
        LiveServer(stalling_stream(first, stop)) as upstream,
        live_balancer([upstream.url], stream_idle_timeout=0.5, read_timeout=30) as lb,
    ):
        try:
            started = time.monotonic()
            _, events = stream(lb.url)
            assert [e.event for e in events] == ["audio_chunk", "error"]
            assert "ReadTimeout" in events[-1].json()["error"]
            assert time.monotonic() - started < 10  # not the 30 s read timeout
            assert lb.worker_stats(upstream.url)["lost_mid_stream"] == 1
        finally:
            stop.set()


def test_other_responses_cut_off_mid_body_end_in_a_broken_connection() -> None:
    app = cut_off(b"RIFF....WAVE", path="/synthesize", media_type=b"audio/wav")
    with LiveServer(app) as upstream, live_balancer([upstream.url]) as lb:
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(f"{lb.url}/synthesize", data={"text": "Hi"})
        assert lb.stats()["totals"]["lost"] == 1
        lb.wait_in_flight(0)


def test_retries_are_bounded() -> None:
    with ExitStack() as stack:
        upstreams = [stack.enter_context(LiveServer(cut_off(b""))) for _ in range(3)]
        lb = stack.enter_context(live_balancer([u.url for u in upstreams], max_attempts=2))
        response = httpx.post(f"{lb.url}/synthesize-stream", data={"text": "Hi"})
        assert response.status_code == 503 and response.headers["retry-after"] == "2"
        assert "every worker tried failed" in response.json()["error"]
        tried = [lb.worker_stats(u.url)["requests"] for u in upstreams]
        assert sorted(tried) == [0, 1, 1]


def test_no_healthy_worker_is_a_503_with_retry_after() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    with live_balancer([nowhere], retry_after=7) as lb:
        response = httpx.post(f"{lb.url}/synthesize-stream", data={"text": "Hi"})
        assert response.status_code == 503 and response.headers["retry-after"] == "7"
        body = response.json()
        assert body["error"] == "no healthy worker is available"
        assert body["workers"] == {"ready": 0, "total": 1}
        assert lb.stats()["totals"]["no_worker"] == 1
        assert lb.worker_stats(nowhere)["health"] == "unreachable"
