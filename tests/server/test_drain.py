"""SIGTERM drains a worker process: /health says `draining`, new requests get 503 with
Retry-After in their API's shape (new WebSockets are refused at the handshake), running
streams finish, then it exits; `--drain-timeout` bounds the wait, a second SIGTERM skips it."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

from tests.balancer.processes import FakeWorker, wait_for
from tests.sse import Event, iter_events

# A stream of 2 s: 40 chunks of 50 ms.
LONG = ("--chunks", "40", "--delay", "0.05")


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[FakeWorker]:
    worker = FakeWorker(*LONG, "--drain-timeout", "30", log_dir=tmp_path).start()
    try:
        yield worker.wait_ready()
    finally:
        worker.stop()


class RunningStream:
    """A `/synthesize-stream` read in a thread; `first` is set at its first audio chunk."""

    def __init__(self, url: str):
        self.url = url
        self.events: list[Event] = []
        self.first = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.first.wait(10), "no audio"

    def _read(self) -> None:
        try:
            with httpx.stream(
                "POST", f"{self.url}/synthesize-stream", data={"text": "Hi."}, timeout=30
            ) as response:
                for event in iter_events(response):
                    self.events.append(event)
                    self.first.set()
        except httpx.HTTPError:
            pass  # cut off: the events so far say how far it got

    def finish(self) -> list[str]:
        self.thread.join(30)
        return [event.event for event in self.events]


def _exits(worker: FakeWorker, timeout: float) -> int | None:
    assert worker.process is not None
    worker.process.join(timeout)
    return worker.process.exitcode


def _sigterm(worker: FakeWorker) -> None:
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGTERM)


def test_a_draining_worker_finishes_its_stream_refuses_new_ones_then_exits(
    worker: FakeWorker,
) -> None:
    running = RunningStream(worker.url)
    _sigterm(worker)
    wait_for(lambda: (worker.health() or {}).get("status") == "draining", 5, "draining")
    health = httpx.get(f"{worker.url}/health")
    assert health.status_code == 503 and health.json()["active_streams"] == 1

    ours = httpx.post(f"{worker.url}/synthesize-stream", data={"text": "Too late."})
    assert ours.status_code == 503 and ours.headers["retry-after"] == "5"
    assert "shutting down" in ours.json()["error"]
    openai = httpx.post(f"{worker.url}/v1/audio/speech", json={"input": "Hi.", "voice": "alloy"})
    assert openai.status_code == 503 and openai.headers["retry-after"] == "5"
    assert openai.json()["error"]["type"] == "server_error"
    eleven = httpx.post(f"{worker.url}/v1/text-to-speech/default", json={"text": "Hi."})
    assert eleven.status_code == 503 and eleven.headers["retry-after"] == "5"
    assert "shutting down" in eleven.json()["detail"]["message"]
    with pytest.raises(InvalidStatus) as refused:
        connect(worker.url.replace("http", "ws") + "/ws/tts", open_timeout=5)
    assert refused.value.response.status_code == 503

    events = running.finish()
    assert events.count("audio_chunk") == 40 and events[-1] == "done"
    assert _exits(worker, 10) == 0


def test_an_open_socket_gets_try_again_later_for_a_new_request(worker: FakeWorker) -> None:
    with connect(worker.url.replace("http", "ws") + "/ws/tts", open_timeout=5) as socket:
        running = RunningStream(worker.url)  # keeps the worker draining meanwhile
        _sigterm(worker)
        wait_for(lambda: (worker.health() or {}).get("status") == "draining", 5, "draining")
        socket.send('{"text": "Too late."}')
        error = json.loads(socket.recv(timeout=5))
        assert error["type"] == "error" and "shutting down" in error["error"]
        with pytest.raises(ConnectionClosedError) as closed:
            socket.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    assert running.finish()[-1] == "done"


def test_the_drain_timeout_bounds_the_wait(tmp_path: Path) -> None:
    # A 10 s stream against a drain of 0.5 s.
    flags = ("--chunks", "200", "--delay", "0.05", "--drain-timeout", "0.5")
    worker = FakeWorker(*flags, log_dir=tmp_path).start().wait_ready()
    try:
        running = RunningStream(worker.url)
        started = time.monotonic()
        _sigterm(worker)
        assert _exits(worker, 10) is not None
        assert time.monotonic() - started < 5  # 0.5 s of drain, then uvicorn's 2 s at most
        assert "done" not in running.finish()
    finally:
        worker.stop()


def test_a_second_sigterm_stops_at_once(worker: FakeWorker) -> None:
    running = RunningStream(worker.url)
    _sigterm(worker)
    wait_for(lambda: (worker.health() or {}).get("status") == "draining", 5, "draining")
    started = time.monotonic()
    _sigterm(worker)
    assert _exits(worker, 10) is not None and time.monotonic() - started < 5
    assert "done" not in running.finish()
