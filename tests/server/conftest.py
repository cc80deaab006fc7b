"""Fixtures: a real uvicorn worker serving the fake engine (or the real one, in e2e tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from server.app import create_app
from server.config import ServerConfig
from server.engine.engine import SpeechEngine
from tests.fakes import FakeEngine
from tests.live_server import LiveServer

# Every HTTP test runs against both runners: one request at a time, and batched decoding.
RUNNER_BATCH_SIZES = {"serial": 1, "batched": 4}


@pytest.fixture(params=list(RUNNER_BATCH_SIZES), ids=list(RUNNER_BATCH_SIZES))
def base_config(tmp_path: Path, request: pytest.FixtureRequest) -> ServerConfig:
    max_batch = RUNNER_BATCH_SIZES[request.param]
    # No warm-up: the tests count the engine's requests (test_ops covers the warm-up).
    return ServerConfig(
        voices_dir=tmp_path / "voices",
        max_streams=1,
        max_queue=4,
        max_batch=max_batch,
        warmup=False,
    )


@contextmanager
def serving(config: ServerConfig, engine: SpeechEngine) -> Iterator[LiveServer]:
    with LiveServer(create_app(config, lambda: engine)) as server:
        yield server


@pytest.fixture
def fake() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def server(base_config: ServerConfig, fake: FakeEngine) -> Iterator[LiveServer]:
    with serving(base_config, fake) as live:
        wait_ready(live.url)
        yield live


def wait_ready(url: str, timeout: float = 60) -> None:
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/health").json()["status"] == "ready":
            return
        time.sleep(0.02)
    raise TimeoutError("worker never became ready")


__all__ = ["replace", "serving", "wait_ready"]
