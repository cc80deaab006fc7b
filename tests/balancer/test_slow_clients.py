"""Clients too slow to send their request: the balancer, with the HTTP protocol its `main`
serves with (edge/deadlines.py, short deadlines here), answers 408 and closes, and goes on
serving everyone else; a long stream is not cut."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from edge.deadlines import DeadlineProtocol
from tests.balancer.processes import LiveBalancer, live_balancer
from tests.balancer.upstreams import Received, endless, recording
from tests.live_server import LiveServer
from tests.raw_http import exchange

HEADERS_S = 1.0
BODY_S = 1.5
SLACK_S = 1.0  # timers on a busy two-core machine


class QuickDeadlines(DeadlineProtocol):
    header_timeout = HEADERS_S
    body_timeout = BODY_S


@pytest.fixture(scope="module")
def balancer() -> Iterator[tuple[LiveBalancer, list[Received]]]:
    received: list[Received] = []
    with (
        LiveServer(recording(received)) as upstream,
        live_balancer([upstream.url], uvicorn_options={"http": QuickDeadlines}) as lb,
    ):
        yield lb, received


def serves_normally(lb: LiveBalancer) -> None:
    assert httpx.post(f"{lb.url}/record", content=b"normal", timeout=10).status_code == 200


def test_a_silent_connection_is_closed(balancer: tuple[LiveBalancer, list[Received]]) -> None:
    lb, _ = balancer
    reply = exchange(lb.url, timeout=HEADERS_S + 5)
    assert reply.closed and reply.data == b""
    assert HEADERS_S - 0.1 < reply.seconds < HEADERS_S + SLACK_S
    serves_normally(lb)


def test_headers_a_byte_at_a_time(balancer: tuple[LiveBalancer, list[Received]]) -> None:
    lb, received = balancer
    received.clear()
    headers = b"POST /record HTTP/1.1\r\nHost: balancer\r\nContent-Length: 2\r\n"
    reply = exchange(lb.url, drip=headers, drip_interval=0.05, timeout=HEADERS_S + 5)
    assert reply.closed and reply.statuses == [408]
    assert reply.json()["field"] == "headers"
    assert reply.seconds < HEADERS_S + SLACK_S
    assert received == []
    serves_normally(lb)


def test_a_body_a_byte_at_a_time(balancer: tuple[LiveBalancer, list[Received]]) -> None:
    lb, received = balancer
    received.clear()
    head = b"POST /record HTTP/1.1\r\nHost: balancer\r\nContent-Length: 1000\r\n\r\n"
    reply = exchange(lb.url, head, drip=b"x" * 1000, drip_interval=0.05, timeout=BODY_S + 5)
    assert reply.closed and reply.statuses == [408]
    assert reply.json()["field"] == "body"
    assert BODY_S - 0.1 < reply.seconds < BODY_S + SLACK_S
    assert received == []  # nothing half-read reaches a worker
    serves_normally(lb)


def test_a_keep_alive_connection_gets_the_same_deadline(
    balancer: tuple[LiveBalancer, list[Received]],
) -> None:
    lb, _ = balancer
    first = b"GET /health HTTP/1.1\r\nHost: balancer\r\n\r\n"
    reply = exchange(lb.url, first, drip=b"GET /health HTTP/1.1\r\n", timeout=HEADERS_S + 5)
    assert reply.closed and reply.statuses == [200, 408]


def test_a_stream_outlives_the_deadlines() -> None:
    with (
        LiveServer(endless(capacity=4)) as upstream,
        live_balancer([upstream.url], uvicorn_options={"http": QuickDeadlines}) as lb,
        httpx.stream("POST", f"{lb.url}/synthesize-stream", data={"text": "x"}) as response,
    ):
        started = time.monotonic()
        events = 0
        for line in response.iter_lines():
            events += line.startswith("event: audio_chunk")
            if time.monotonic() - started > HEADERS_S + BODY_S + 0.5:
                break
        assert events > 10  # still flowing after both deadlines
