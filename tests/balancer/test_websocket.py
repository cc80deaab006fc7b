"""WebSocket proxying: routed, leased and failed over like HTTP streams, relayed both ways.

Workers are `tests.fake_ws_worker` apps, in threads, or in a process where a test kills one
mid-socket; clients are websockets' own synchronous client, as a user's script would be.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from balancer.contexts import Contexts
from balancer.counters import SocketCounters
from tests.balancer.processes import LiveBalancer, free_port, live_balancer, wait_for
from tests.fake_ws_worker import FakeSocketWorker, SocketRecord
from tests.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 10.0  # generous: for anything that should take milliseconds


class Upstream:
    """A fake WebSocket worker served in a thread."""

    def __init__(self, url: str, fake: FakeSocketWorker):
        self.url, self.fake = url, fake

    @property
    def sockets(self) -> list[SocketRecord]:
        return self.fake.sockets


@contextmanager
def upstream(**options: Any) -> Iterator[Upstream]:
    fake = FakeSocketWorker(**options)
    with LiveServer(fake.app) as server:
        yield Upstream(server.url, fake)


@contextmanager
def upstream_process(*flags: str) -> Iterator[str]:
    """A fake WebSocket worker in its own process (so it may crash): its URL."""
    port = free_port()
    command = [sys.executable, "-m", "tests.fake_ws_worker", "--port", str(port), *flags]
    process = subprocess.Popen(command, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the fake worker exited with {process.returncode}")
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, 60, "the fake WebSocket worker to start")
        yield url
    finally:
        process.kill()
        process.wait(5)


def ws_url(lb: LiveBalancer, path: str = "/ws/tts") -> str:
    return lb.url.replace("http://", "ws://", 1) + path


def open_socket(lb: LiveBalancer, path: str = "/ws/tts", **options: Any) -> ClientConnection:
    # max_size=None: the test client takes whatever the balancer relays.
    ws: ClientConnection = connect(ws_url(lb, path), open_timeout=TIMEOUT, max_size=None, **options)
    return ws


def served_by(ws: ClientConnection) -> str:
    assert ws.response is not None
    return ws.response.headers["x-upstream-worker"]


def command(ws: ClientConnection, **fields: Any) -> None:
    ws.send(json.dumps(fields))


def receive_json(ws: ClientConnection) -> Any:
    message = ws.recv(timeout=TIMEOUT)
    assert isinstance(message, str), f"expected a text message, got {message!r}"
    return json.loads(message)


def sockets_of(lb: LiveBalancer, url: str | None = None) -> dict[str, Any]:
    """The socket counters in /stats: a worker's, or the totals."""
    if url is None:
        totals: dict[str, Any] = lb.stats()["totals"]["sockets"]
        return totals
    worker: dict[str, Any] = lb.worker_stats(url)["sockets"]
    return worker


def wait_sockets_open(lb: LiveBalancer, expected: int) -> None:
    wait_for(lambda: sockets_of(lb)["open"] == expected, TIMEOUT, f"{expected} sockets open")


def metric_samples(lb: LiveBalancer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{lb.url}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# Relay


def test_text_and_binary_messages_are_relayed_both_ways_in_order() -> None:
    with upstream() as worker, live_balancer([worker.url]) as lb, open_socket(lb) as ws:
        command(ws, echo=1)
        ws.send(b"\x00\x01binary")
        command(ws, echo="two")
        command(ws, stream=5, size=1000)
        command(ws, echo=3)  # answered while the stream runs: after it, or between frames
        received = [ws.recv(timeout=TIMEOUT) for _ in range(10)]
    # Text stays text (JSON here) and binary stays binary.
    messages = [json.loads(m) if isinstance(m, str) else m for m in received]
    assert messages[:3] == [
        {"type": "echo", "echo": 1},
        b"\x00\x01binary",
        {"type": "echo", "echo": "two"},
    ]
    frames = [m for m in messages[3:] if isinstance(m, bytes)]
    assert frames == [bytes([i]) * 1000 for i in range(5)]
    texts = [m for m in messages[3:] if not isinstance(m, bytes)]
    assert sorted(texts, key=str) == [{"type": "done", "frames": 5}, {"type": "echo", "echo": 3}]
    # The stream's own order holds: its "done" comes after its last frame.
    assert messages.index({"type": "done", "frames": 5}) > messages.index(frames[-1])


def test_large_messages_pass_under_the_default_limit() -> None:
    # 4 MiB each way: websockets' own default limit (1 MiB) would have closed the socket.
    payload = os.urandom(4 * 1024 * 1024)
    with upstream() as worker, live_balancer([worker.url]) as lb, open_socket(lb) as ws:
        ws.send(payload)
        assert ws.recv(timeout=30) == payload


def test_a_worker_message_over_the_limit_closes_the_socket_with_1009() -> None:
    with (
        upstream() as worker,
        live_balancer([worker.url], ws_max_message_bytes=1024) as lb,
        open_socket(lb) as ws,
    ):
        command(ws, stream=2, size=1024)  # at the limit: relayed
        assert ws.recv(timeout=TIMEOUT) == bytes([0]) * 1024
        command(ws, stream=1, size=1025)
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # the rest of the first stream, then the close
                ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        assert sockets_of(lb)["lost"] == 0  # the worker is fine; its message was too big


def test_every_worker_websocket_path_is_proxied_with_its_query_headers_and_subprotocol() -> None:
    query = "model_id=eleven_flash_v2_5&output_format=mp3_22050_32&inactivity_timeout=20"
    paths = [
        "/ws/tts",
        "/ws/stream/audio",
        f"/v1/text-to-speech/voice%20one/stream-input?{query}",
        f"/v1/text-to-speech/abc123/multi-stream-input?{query}",
    ]
    headers = {
        "xi-api-key": "sk-test-123",
        "Authorization": "Bearer token-456",
        "Origin": "https://app.example",
        "User-Agent": "elevenlabs-python/1.0",
    }
    with upstream() as worker, live_balancer([worker.url]) as lb:
        for path in paths:
            options: dict[str, Any] = {
                "additional_headers": headers,
                "subprotocols": ["tts.v1", "tts.v0"],
            }
            with open_socket(lb, path, **options) as ws:
                assert served_by(ws) == worker.url
                assert ws.subprotocol == "tts.v1"  # the worker's choice, passed on
                command(ws, echo=path)
                assert receive_json(ws) == {"type": "echo", "echo": path}
        assert [s.target for s in worker.sockets] == paths  # raw path and query, unchanged
        for record in worker.sockets:
            assert record.subprotocols == ["tts.v1", "tts.v0"]
            assert record.header("xi-api-key") == ["sk-test-123"]
            assert record.header("authorization") == ["Bearer token-456"]
            assert record.header("user-agent") == ["elevenlabs-python/1.0"]
            assert record.header("x-forwarded-for") == ["127.0.0.1"]
            assert record.header("x-forwarded-proto") == ["http"]
            assert record.header("origin") == []
            # The upstream handshake's own, once each: nothing of the client's duplicated.
            for name in ("host", "upgrade", "connection", "sec-websocket-key"):
                assert len(record.header(name)) == 1, name
            assert record.header("sec-websocket-extensions") == []  # no compression upstream


# Routing and leases


def test_sockets_are_pinned_to_the_least_loaded_worker_and_counted_while_open() -> None:
    with (
        upstream() as a,
        upstream() as b,
        live_balancer([a.url, b.url]) as lb,
        open_socket(lb) as first,
    ):
        wait_sockets_open(lb, 1)
        assert lb.worker_stats(served_by(first))["in_flight"] == 1
        with open_socket(lb) as second:
            # Both idle before: the second socket goes to the other worker.
            assert {served_by(first), served_by(second)} == {a.url, b.url}
            for ws in (first, second):  # each relayed to its own worker
                command(ws, echo=served_by(ws))
                assert receive_json(ws)["echo"] == served_by(ws)
            assert len(a.sockets) == len(b.sockets) == 1
            stats = lb.stats()
            assert stats["balancer"]["in_flight"] == 2
            assert stats["balancer"]["open_sockets"] == 2
            for w in stats["workers"]:
                assert w["in_flight"] == 1 and w["sockets"]["open"] == 1
        # The second closed: its worker's load is released, the first one's still held.
        wait_for(lambda: lb.stats()["balancer"]["in_flight"] == 1, TIMEOUT, "one release")
        assert lb.worker_stats(served_by(first))["in_flight"] == 1
        first.close()
        lb.wait_in_flight(0)
        totals = sockets_of(lb)
        assert totals["open"] == 0 and totals["opened"] == 2 and totals["client_closed"] == 2


# Failover before the handshake


def test_a_worker_refusing_connections_is_replaced_before_the_handshake() -> None:
    with upstream() as healthy, ExitStack() as down_server:
        down = down_server.enter_context(upstream())
        # Listed first, so it would get the first socket; no health checks after the first.
        with live_balancer([down.url, healthy.url], health_interval=60) as lb:
            # The balancer checks at startup and once more as its checker starts: let both
            # see the worker up, then stop it, while the balancer still believes it ready.
            wait_for(lambda: down.fake.health_checks >= 2, TIMEOUT, "two health checks")
            down_server.close()
            with open_socket(lb) as ws:
                assert served_by(ws) == healthy.url
                command(ws, echo="hi")
                assert receive_json(ws) == {"type": "echo", "echo": "hi"}
            gone = lb.worker_stats(down.url)
            assert gone["errors"] == 1 and gone["sockets"]["failovers"] == 1
            assert "ConnectionRefused" in gone["last_error"]
            assert gone["in_rotation"] is False  # nothing listening: out of rotation at once
            assert sockets_of(lb)["failovers"] == 1
            lb.wait_in_flight(0)


def test_a_worker_answering_503_to_the_upgrade_is_replaced() -> None:
    with (
        upstream(refuse=503) as busy,
        upstream() as healthy,
        live_balancer([busy.url, healthy.url]) as lb,
        open_socket(lb) as ws,
    ):
        assert served_by(ws) == healthy.url
        command(ws, echo="hi")
        assert receive_json(ws) == {"type": "echo", "echo": "hi"}
        assert len(busy.sockets) == 1  # it was asked first
        refusing = lb.worker_stats(busy.url)
        assert refusing["sockets"]["refused"] == 1 and refusing["sockets"]["failovers"] == 1
        assert refusing["errors"] == 0 and refusing["breaker"] == "closed"  # busy, not broken


def test_a_worker_that_does_not_accept_in_time_is_replaced() -> None:
    with (
        upstream(stall=True) as stalled,
        upstream() as healthy,
        live_balancer([stalled.url, healthy.url], ws_handshake_timeout=0.5) as lb,
    ):
        started = time.monotonic()
        with open_socket(lb) as ws:
            assert served_by(ws) == healthy.url
            assert time.monotonic() - started < TIMEOUT
        assert len(stalled.sockets) == 1 and not stalled.sockets[0].accepted
        slow = lb.worker_stats(stalled.url)
        assert slow["errors"] == 1 and "TimeoutError" in slow["last_error"]
        assert slow["sockets"]["failovers"] == 1


def test_when_every_worker_is_busy_the_client_gets_their_503() -> None:
    with (
        upstream(refuse=503) as a,
        upstream(refuse=503) as b,
        live_balancer([a.url, b.url]) as lb,
    ):
        with pytest.raises(InvalidStatus) as refused, open_socket(lb):
            pass
        response = refused.value.response
        assert response.status_code == 503 and response.headers["retry-after"] == "3"
        assert json.loads(response.body)["error"].startswith("busy")
        assert response.headers["x-upstream-worker"] in (a.url, b.url)
        assert len(a.sockets) == len(b.sockets) == 1  # both tried
        totals = sockets_of(lb)
        assert totals["refused"] == 1 and totals["opened"] == 0 and totals["failovers"] == 1
        lb.wait_in_flight(0)


def test_when_every_worker_fails_the_handshake_the_client_gets_a_503() -> None:
    with (
        upstream(stall=True) as a,
        upstream(stall=True) as b,
        live_balancer([a.url, b.url], ws_handshake_timeout=0.3, retry_after=7) as lb,
    ):
        with pytest.raises(InvalidStatus) as refused, open_socket(lb):
            pass
        response = refused.value.response
        assert response.status_code == 503 and response.headers["retry-after"] == "7"
        assert "every worker tried failed" in json.loads(response.body)["error"]
        assert sockets_of(lb)["refused"] == 1
        lb.wait_in_flight(0)


def test_when_no_worker_is_reachable_the_client_gets_a_503() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    with live_balancer([nowhere], retry_after=7) as lb:
        with pytest.raises(InvalidStatus) as refused, open_socket(lb):
            pass
        response = refused.value.response
        assert response.status_code == 503 and response.headers["retry-after"] == "7"
        body = json.loads(response.body)
        assert body["error"] == "no healthy worker is available"
        assert body["workers"] == {"ready": 0, "total": 1}
        assert sockets_of(lb)["refused"] == 1


# Endings


def test_a_worker_lost_mid_socket_ends_it_with_an_error_message_and_1011() -> None:
    with upstream_process() as url, live_balancer([url], health_interval=60) as lb:
        with open_socket(lb) as ws:
            command(ws, stream=10, size=100, delay=0.05, die_after=2)
            assert ws.recv(timeout=TIMEOUT) == bytes([0]) * 100
            assert ws.recv(timeout=TIMEOUT) == bytes([1]) * 100
            error = receive_json(ws)
            assert error["type"] == "error"
            assert error["error"].startswith("worker lost: ") and url in error["error"]
            assert error["message"] == error["error"]
            with pytest.raises(ConnectionClosedError) as closed:
                ws.recv(timeout=TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
        lost = lb.worker_stats(url)
        assert lost["sockets"]["lost"] == 1 and lost["errors"] == 1
        assert sockets_of(lb)["lost"] == 1
        lb.wait_in_flight(0)


@pytest.mark.parametrize(
    ("how", "code"),
    [("close", 4000), ("vanish", 1001)],  # vanish: no close frame, so "going away"
)
def test_a_client_that_goes_away_closes_the_worker_socket_at_once(how: str, code: int) -> None:
    with upstream() as worker, live_balancer([worker.url]) as lb:
        with open_socket(lb) as ws:
            # 500 frames 20 ms apart: a 10 s stream, unless the worker hears nobody listens.
            command(ws, stream=500, size=100, delay=0.02)
            for _ in range(2):
                assert isinstance(ws.recv(timeout=TIMEOUT), bytes)
            gone_at = time.time()
            if how == "close":
                ws.close(code=4000, reason="bye")
            else:
                ws.socket.shutdown(socket.SHUT_RDWR)  # the connection just drops
        record = worker.sockets[0]
        wait_for(lambda: record.closed_by == "client", TIMEOUT, "the worker to hear")
        assert record.close_code == code
        assert record.closed_at is not None and record.closed_at - gone_at < TIMEOUT / 2
        sent = record.frames_sent
        assert sent < 500
        time.sleep(0.1)  # five frames' time: the worker has stopped generating
        assert record.frames_sent == sent
        lb.wait_in_flight(0)
        assert sockets_of(lb)["client_closed"] == 1


def test_close_codes_and_reasons_from_the_worker_reach_the_client() -> None:
    with upstream() as worker, live_balancer([worker.url]) as lb, open_socket(lb) as ws:
        command(ws, echo="first")
        command(ws, close=4003, reason="quota exceeded")
        assert receive_json(ws) == {"type": "echo", "echo": "first"}
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4003, "quota exceeded")
        wait_for(lambda: sockets_of(lb)["worker_closed"] == 1, TIMEOUT, "the count")
        assert lb.worker_stats(worker.url)["sockets"]["worker_closed"] == 1


# Stats and metrics


def test_stats_and_metrics_count_sockets() -> None:
    with (
        upstream(refuse=503) as busy,
        upstream() as healthy,
        live_balancer([busy.url, healthy.url]) as lb,
    ):
        with open_socket(lb) as ws:
            wait_sockets_open(lb, 1)
            found = metric_samples(lb)
            assert found[("balancer_sockets_open", ())] == 1
            assert found[("balancer_worker_sockets_open", (("worker", healthy.url),))] == 1
            assert found[("balancer_worker_sockets_open", (("worker", busy.url),))] == 0
            assert found[("balancer_worker_in_flight", (("worker", healthy.url),))] == 1
            command(ws, close=1000)
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=TIMEOUT)
        with open_socket(lb) as ws:  # the busy worker is tried first again, and skipped
            wait_sockets_open(lb, 1)
        lb.wait_in_flight(0)
        stats = lb.stats()
        assert stats["totals"]["sockets"] == {
            "open": 0,
            "opened": 2,
            "refused": 0,
            "failovers": 2,
            "lost": 0,
            "client_closed": 1,
            "worker_closed": 1,
            "contexts_open": 0,
            "contexts_opened": 0,
        }
        assert stats["balancer"]["open_sockets"] == 0
        assert stats["totals"]["requests"] == 0  # HTTP requests are counted apart
        found = metric_samples(lb)
        healthy_label, busy_label = (("worker", healthy.url),), (("worker", busy.url),)
        assert found[("balancer_sockets_open", ())] == 0
        assert found[("balancer_sockets_opened_total", ())] == 2
        assert found[("balancer_sockets_failovers_total", ())] == 2
        assert found[("balancer_sockets_client_closed_total", ())] == 1
        assert found[("balancer_sockets_worker_closed_total", ())] == 1
        assert found[("balancer_worker_sockets_opened_total", healthy_label)] == 2
        assert found[("balancer_worker_sockets_refused_total", busy_label)] == 2
        assert found[("balancer_worker_sockets_failovers_total", busy_label)] == 2
        page = httpx.get(f"{lb.url}/stats?format=html").text
        assert "sockets open / opened" in page and "t.sockets.open" in page


def test_contexts_of_multi_stream_sockets_are_counted() -> None:
    def contexts() -> tuple[int, int]:
        totals = sockets_of(lb)
        return totals["contexts_open"], totals["contexts_opened"]

    with upstream() as worker, live_balancer([worker.url]) as lb:
        # The worker answers each message, and the balancer counts a message before relaying
        # it: once the answer is here, the count is up to date.
        with open_socket(lb, "/v1/text-to-speech/v1/multi-stream-input") as ws:

            def say(**fields: Any) -> None:
                command(ws, **fields)
                receive_json(ws)

            say(text=" ", context_id="a")
            say(text="Hello there.", context_id="a")
            assert contexts() == (1, 1)
            say(text=" ", context_id="b")
            assert contexts() == (2, 2)
            say(context_id="a", close_context=True)
            assert contexts() == (1, 2)
            say(send={"isFinal": True, "contextId": "b"})  # the worker finished "b"
            assert contexts() == (0, 2)
            say(text=" ", context_id="c")
            assert contexts() == (1, 3)
            assert lb.worker_stats(worker.url)["sockets"]["contexts_open"] == 1
        wait_for(lambda: contexts() == (0, 3), TIMEOUT, "the socket's contexts to close")
        with open_socket(lb, "/ws/tts") as ws:  # contexts only exist on multi-stream sockets
            command(ws, text=" ", context_id="d")
            receive_json(ws)
            assert contexts() == (0, 3)


def test_context_counting_ignores_what_is_not_a_context_message() -> None:
    counters = SocketCounters()
    contexts = Contexts([counters])
    contexts.from_client("not json, but mentions context_id")
    contexts.from_client('["context_id"]')
    contexts.from_client(json.dumps({"context_id": 7}))
    contexts.from_client(json.dumps({"context_id": "x" * 1000}))
    contexts.from_worker(json.dumps({"isFinal": True, "contextId": "nobody"}))
    assert (counters.contexts_open, counters.contexts_opened) == (0, 0)
    contexts.from_client(json.dumps({"text": "Hi", "context_id": "a"}))
    contexts.from_worker(json.dumps({"audio": "AAAA", "isFinal": False, "contextId": "a"}))
    assert (counters.contexts_open, counters.contexts_opened) == (1, 1)
    contexts.from_client(json.dumps({"close_socket": True}))
    assert (counters.contexts_open, len(contexts)) == (0, 0)
