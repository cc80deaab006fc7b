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


@pytest.fixture
def base_config(tmp_path: Path) -> ServerConfig:
    return ServerConfig(voices_dir=tmp_path / "voices", max_streams=1, max_queue=4)


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
