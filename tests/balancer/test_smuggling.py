"""Request smuggling through the balancer: a request whose length can be read two ways is
refused (400, connection closed) or forwarded as exactly one request; a worker never sees a
request hidden in another one's bytes.

Raw bytes on a socket to the real balancer (its uvicorn and h11), in front of an upstream that
records every request it gets.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from edge.deadlines import DeadlineProtocol
from tests.balancer.processes import LiveBalancer, live_balancer
from tests.balancer.upstreams import Received, recording
from tests.live_server import LiveServer
from tests.raw_http import exchange

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: balancer\r\n\r\n"


class QuickDeadlines(DeadlineProtocol):
    # A connection left open after a response closes soon: a request parsed from leftover
    # bytes would have reached the upstream by then.
    header_timeout = 0.5
    body_timeout = 1.0


def post(headers: bytes, body: bytes, version: bytes = b"1.1") -> bytes:
    return b"POST /record HTTP/%s\r\nHost: balancer\r\n%s\r\n%s" % (version, headers, body)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"

# Each is refused: by h11 (uvicorn's 400, text) or by the balancer (400, JSON), and closed.
REFUSED = {
    # CL.TE: by Content-Length the smuggled request is body; by chunked, a second request.
    "content-length-then-chunked": post(
        b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(LAST_CHUNK + SMUGGLED),
        LAST_CHUNK + SMUGGLED,
    ),
    # TE.CL: the other way round.
    "chunked-then-content-length": post(
        b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
        chunk(b"abc" + SMUGGLED) + LAST_CHUNK,
    ),
    "chunked-in-other-case-with-length": post(
        b"Content-Length: 5\r\nTransfer-Encoding: ChUnKeD\r\n", LAST_CHUNK + SMUGGLED
    ),
    "two-different-content-lengths": post(
        b"Content-Length: 0\r\nContent-Length: %d\r\n" % len(SMUGGLED), SMUGGLED
    ),
    "content-length-list": post(b"Content-Length: 0, %d\r\n" % len(SMUGGLED), SMUGGLED),
    "chunked-then-identity": post(
        b"Transfer-Encoding: chunked, identity\r\n", LAST_CHUNK + SMUGGLED
    ),
    "two-transfer-encodings": post(
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", LAST_CHUNK + SMUGGLED
    ),
    "transfer-encoding-folded-over-two-lines": post(
        b"Content-Length: %d\r\nTransfer-Encoding:\r\n chunked\r\n" % len(LAST_CHUNK + SMUGGLED),
        LAST_CHUNK + SMUGGLED,
    ),
    "space-before-the-colon": post(
        b"Content-Length: %d\r\nTransfer-Encoding : chunked\r\n" % len(LAST_CHUNK + SMUGGLED),
        LAST_CHUNK + SMUGGLED,
    ),
    "chunked-in-http-1.0": post(
        b"Transfer-Encoding: chunked\r\n", LAST_CHUNK + SMUGGLED, version=b"1.0"
    ),
    "signed-content-length": post(b"Content-Length: +5\r\n", b"hello" + SMUGGLED),
    "chunk-size-not-hex": post(b"Transfer-Encoding: chunked\r\n", b"5x\r\nhello\r\n" + SMUGGLED),
    "folded-first-header": b"POST /record HTTP/1.1\r\n Host: balancer\r\n\r\n" + SMUGGLED,
}

# Each is unambiguous, whatever reads it: forwarded once, with this body.
FORWARDED_ONCE = {
    "the-same-content-length-twice": (
        post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
        b"hello",
    ),
    "a-folded-header-of-no-consequence": (
        post(b"Content-Length: 5\r\nX-Note: first\r\n second\r\n", b"hello"),
        b"hello",
    ),
    "chunked-alone": (
        post(b"Transfer-Encoding: chunked\r\n", chunk(b"hel") + chunk(b"lo") + LAST_CHUNK),
        b"hello",
    ),
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[LiveServer, list[Received]]]:
    received: list[Received] = []
    with LiveServer(recording(received)) as server:
        yield server, received


@pytest.fixture(scope="module")
def balancer(upstream: tuple[LiveServer, list[Received]]) -> Iterator[LiveBalancer]:
    options = {"http": QuickDeadlines}
    with live_balancer([upstream[0].url], uvicorn_options=options) as lb:
        yield lb


@pytest.fixture
def received(upstream: tuple[LiveServer, list[Received]]) -> list[Received]:
    upstream[1].clear()
    return upstream[1]


def still_serves(lb: LiveBalancer, received: list[Received]) -> None:
    """A normal request right after is forwarded as usual."""
    received.clear()
    response = httpx.post(f"{lb.url}/record", content=b"normal", timeout=10)
    assert response.status_code == 200
    assert [(r.target, r.body) for r in received] == [("/record", b"normal")]


@pytest.mark.parametrize("raw", REFUSED.values(), ids=REFUSED.keys())
def test_ambiguous_requests_are_refused_and_the_connection_closed(
    balancer: LiveBalancer, received: list[Received], raw: bytes
) -> None:
    reply = exchange(balancer.url, raw, timeout=5)
    assert reply.closed and reply.statuses == [400], reply.data
    assert received == []  # neither the request nor the one hidden in it
    still_serves(balancer, received)


def test_the_balancer_names_the_ambiguity(balancer: LiveBalancer, received: list[Received]) -> None:
    reply = exchange(balancer.url, REFUSED["content-length-then-chunked"], timeout=5)
    assert reply.header("connection") == "close"
    body = reply.json()
    assert body["field"] == "transfer-encoding" and "ambiguous" in body["error"]


@pytest.mark.parametrize(("raw", "body"), FORWARDED_ONCE.values(), ids=FORWARDED_ONCE.keys())
def test_unambiguous_requests_are_forwarded_exactly_once(
    balancer: LiveBalancer, received: list[Received], raw: bytes, body: bytes
) -> None:
    reply = exchange(balancer.url, raw, timeout=5)
    assert reply.closed and reply.statuses == [200], reply.data  # closed: idle after it
    assert [(r.target, r.body) for r in received] == [("/record", body)]
    forwarded = received[0].headers
    assert "transfer-encoding" not in forwarded and forwarded["content-length"] == str(len(body))
    still_serves(balancer, received)


def test_a_folded_header_arrives_unfolded(balancer: LiveBalancer, received: list[Received]) -> None:
    exchange(balancer.url, FORWARDED_ONCE["a-folded-header-of-no-consequence"][0], timeout=5)
    assert received[0].headers["x-note"] == "first second"
