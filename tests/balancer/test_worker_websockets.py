"""The workers' own WebSocket protocols through the balancer, against real worker processes
(the worker app over the fake engine): what a voice agent behind the balancer sees."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.balancer.processes import FakeWorker, fake_workers, live_balancer, wait_for

MULTI = "/v1/text-to-speech/default/multi-stream-input?output_format=pcm_24000"
CHUNK_BYTES = 2 * int(0.2 * 24000)


@pytest.fixture(scope="module")
def ws_workers(logs: Path) -> Iterator[list[FakeWorker]]:
    flags = ("--chunks", "5", "--delay", "0.02")
    with fake_workers(flags, flags, log_dir=logs) as workers:
        yield workers


def _ws(url: str, path: str) -> ClientConnection:
    return connect(url.replace("http://", "ws://") + path, open_timeout=10)


def _turn(socket: ClientConnection, context: str) -> bytes:
    socket.send(json.dumps({"text": "Through the balancer. ", "context_id": context}))
    socket.send(json.dumps({"text": "", "context_id": context, "flush": True}))
    socket.send(json.dumps({"context_id": context, "close_context": True}))
    audio = b""
    while True:
        message = json.loads(socket.recv(timeout=30))
        assert "error" not in message, message
        if message["isFinal"]:
            return audio
        audio += base64.b64decode(message["audio"])


def test_text_in_sockets_are_pinned_counted_and_served(ws_workers: list[FakeWorker]) -> None:
    with live_balancer([w.url for w in ws_workers]) as balancer:
        with _ws(balancer.url, MULTI) as first, _ws(balancer.url, MULTI) as second:
            balancer.wait_in_flight(2)
            loads = [balancer.worker_stats(w.url)["in_flight"] for w in ws_workers]
            assert loads == [1, 1]  # one socket each: pinned to the least loaded
            assert len(_turn(first, "a")) == 5 * CHUNK_BYTES
            assert len(_turn(second, "b")) == 5 * CHUNK_BYTES
            assert balancer.stats()["totals"]["sockets"]["contexts_opened"] == 2
        balancer.wait_in_flight(0)


def test_the_seed_protocol_works_through_the_balancer(ws_workers: list[FakeWorker]) -> None:
    with live_balancer([w.url for w in ws_workers]) as balancer, _ws(balancer.url, "/ws/tts") as s:
        s.send(json.dumps({"text": "Hello.", "seed": 1}))
        frames: list[str | bytes] = []
        while not frames or isinstance(frames[-1], bytes) or "complete" not in frames[-1]:
            frames.append(s.recv(timeout=30))
    assert sum(len(f) for f in frames if isinstance(f, bytes)) == 5 * CHUNK_BYTES


def test_a_worker_dying_mid_socket_closes_the_client_with_1011(logs: Path) -> None:
    with (
        fake_workers(("--chunks", "50", "--delay", "0.05", "--die-after", "2"), log_dir=logs) as (
            dying,
        ),
        live_balancer([dying.url]) as balancer,
        _ws(balancer.url, MULTI) as socket,
    ):
        socket.send(json.dumps({"text": "This will break. ", "context_id": "x", "flush": True}))
        messages = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                messages.append(json.loads(socket.recv(timeout=30)))
    assert [m for m in messages if "audio" in m]
    assert messages[-1]["type"] == "error" and "worker lost" in messages[-1]["error"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011


def test_a_client_leaving_stops_the_workers_generation(logs: Path) -> None:
    with (
        fake_workers(("--chunks", "400", "--delay", "0.05"), log_dir=logs) as (worker,),
        live_balancer([worker.url]) as balancer,
    ):
        with _ws(balancer.url, MULTI) as socket:
            socket.send(json.dumps({"text": "Long. ", "context_id": "l", "flush": True}))
            json.loads(socket.recv(timeout=30))
            health = worker.health()
            assert health is not None and health["active_streams"] == 1
        started = time.monotonic()
        wait_for(lambda: (worker.health() or {}).get("active_streams") == 0, 10, "idle worker")
        assert time.monotonic() - started < 5
        balancer.wait_in_flight(0)
