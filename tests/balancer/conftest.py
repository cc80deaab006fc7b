"""Fixtures: fake worker processes shared by a session, and SSE helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.balancer.processes import FakeWorker, fake_workers
from tests.sse import Event, iter_events


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker-logs")


@pytest.fixture(scope="session")
def fast_pair(tmp_path_factory: pytest.TempPathFactory, logs: Path) -> Iterator[list[FakeWorker]]:
    """Two workers of one host (one voices directory) with short streams: 5 chunks, 20 ms each."""
    voices = str(tmp_path_factory.mktemp("shared-voices"))
    flags = ("--chunks", "5", "--delay", "0.02", "--voices-dir", voices)
    with fake_workers(flags, flags, log_dir=logs) as workers:
        yield workers


@pytest.fixture(scope="session")
def slow_pair(logs: Path) -> Iterator[list[FakeWorker]]:
    """Two workers whose streams last 10 s (200 chunks, 50 ms each): tests hold them open and
    hang up; capacity 4 and a queue of 16 each."""
    flags = ("--chunks", "200", "--delay", "0.05")
    with fake_workers(flags, flags, log_dir=logs) as workers:
        yield workers


@pytest.fixture
def fast(fast_pair: list[FakeWorker]) -> list[FakeWorker]:
    for worker in fast_pair:
        worker.wait_idle()
    return fast_pair


@pytest.fixture
def slow(slow_pair: list[FakeWorker]) -> list[FakeWorker]:
    for worker in slow_pair:
        worker.wait_idle()
    return slow_pair


def stream(
    url: str, path: str = "/synthesize-stream", **form: str
) -> tuple[httpx.Response, list[Event]]:
    with httpx.stream("POST", f"{url}{path}", data=form or {"text": "Hello."}, timeout=30) as r:
        if r.status_code != 200:
            r.read()
            return r, []
        events = list(iter_events(r))
    return r, events
