"""`UpstreamRequest`: what is forwarded to the worker, and reading the body."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.types import Message, Scope

from balancer.request import BodyTooLarge, ClientGone, UpstreamRequest, read_body


def scope(**extra: object) -> Scope:
    base: Scope = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "path": "/voices/a b",
        "raw_path": b"/voices/a%20b",
        "query_string": b"x=1&y=%2F",
        "client": ("10.1.2.3", 5555),
        "headers": [
            (b"host", b"tts.example.com"),
            (b"content-type", b"multipart/form-data; boundary=xyz"),
            (b"content-length", b"3"),
            (b"connection", b"keep-alive, x-private"),
            (b"x-private", b"hop"),
            (b"transfer-encoding", b"chunked"),
            (b"expect", b"100-continue"),
            (b"x-forwarded-for", b"1.1.1.1"),
            (b"authorization", b"Bearer t"),
        ],
    }
    base.update(extra)
    return base


def test_end_to_end_headers_are_kept_and_hop_by_hop_ones_dropped() -> None:
    request = UpstreamRequest.from_scope(scope(), b"abc")
    headers = dict(request.headers)
    assert headers[b"content-type"] == b"multipart/form-data; boundary=xyz"
    assert headers[b"authorization"] == b"Bearer t"
    for hop in (b"host", b"content-length", b"connection", b"x-private", b"transfer-encoding"):
        assert hop not in headers
    assert b"expect" not in headers
    assert headers[b"x-forwarded-for"] == b"1.1.1.1, 10.1.2.3"
    assert headers[b"x-forwarded-host"] == b"tts.example.com"
    assert headers[b"x-forwarded-proto"] == b"http"


def test_the_target_is_the_raw_path_and_query() -> None:
    request = UpstreamRequest.from_scope(scope(), b"abc")
    assert request.target == b"/voices/a%20b?x=1&y=%2F"
    built = request.to(httpx.AsyncClient(), httpx.URL("http://127.0.0.1:6093"))
    assert built.url.raw_path == b"/voices/a%20b?x=1&y=%2F"
    assert built.headers["content-length"] == "3" and built.content == b"abc"


def run_read(messages: list[Message], limit: int) -> bytes:
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0)

    return asyncio.run(read_body(receive, limit))


def test_the_body_is_read_whole() -> None:
    parts: list[Message] = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    ]
    assert run_read(parts, 10) == b"abcd"


def test_an_oversized_body_is_refused_and_a_gone_client_noticed() -> None:
    with pytest.raises(BodyTooLarge):
        run_read([{"type": "http.request", "body": b"x" * 11, "more_body": False}], 10)
    with pytest.raises(ClientGone):
        run_read([{"type": "http.disconnect"}], 10)
