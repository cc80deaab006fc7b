"""Active health checks: loading, draining and failed workers get no traffic; capacity comes
from the ready ones."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import httpx

from server.app import create_app as create_worker_app
from server.config import ServerConfig
from server.engine.engine import SpeechEngine
from tests.balancer.conftest import stream
from tests.balancer.processes import FakeWorker, fake_workers, live_balancer, wait_for
from tests.balancer.upstreams import endless
from tests.live_server import LiveServer
from tests.server.test_drain import RunningStream


def test_a_loading_worker_gets_traffic_only_once_ready(fast: list[FakeWorker], logs: Path) -> None:
    loading = FakeWorker("--chunks", "5", "--delay", "0.02", "--load-delay", "1.5", log_dir=logs)
    loading.start()
    try:
        wait_for(loading.health, 30, "the worker to answer")
        with live_balancer([loading.url, fast[0].url], health_interval=0.05) as lb:
            assert lb.worker_stats(loading.url)["health"] == "loading"
            served = [stream(lb.url)[0].headers["x-upstream-worker"] for _ in range(3)]
            assert served == [fast[0].url] * 3
            assert lb.worker_stats(loading.url)["requests"] == 0
            wait_for(lambda: lb.worker_stats(loading.url)["in_rotation"], 30, "readiness")
            served = [stream(lb.url)[0].headers["x-upstream-worker"] for _ in range(4)]
            assert Counter(served) == {loading.url: 2, fast[0].url: 2}
    finally:
        loading.stop()


def test_a_worker_whose_model_failed_gets_no_traffic(
    tmp_path: Path, fast: list[FakeWorker]
) -> None:
    def broken() -> SpeechEngine:
        raise RuntimeError("no weights here")

    config = ServerConfig(voices_dir=tmp_path)
    with LiveServer(create_worker_app(config, broken)) as failed:
        wait_for(lambda: failed.url and _status(failed.url) == "failed", 10, "the failure")
        with live_balancer([failed.url, fast[0].url]) as lb:
            stats = lb.worker_stats(failed.url)
            assert stats["health"] == "failed" and "no weights here" in stats["last_error"]
            served = {stream(lb.url)[0].headers["x-upstream-worker"] for _ in range(3)}
            assert served == {fast[0].url}


def test_a_draining_worker_gets_no_new_streams_and_leaves_the_capacity(
    fast: list[FakeWorker], logs: Path
) -> None:
    # Streams of 2 s, so that the one it runs keeps it draining for the test's length.
    draining = FakeWorker("--chunks", "40", "--delay", "0.05", "--max-streams", "3", log_dir=logs)
    draining.start().wait_ready()
    try:
        with live_balancer([draining.url, fast[0].url], health_interval=0.05) as lb:
            assert lb.stats()["balancer"]["capacity"] == 3 + 4
            running = RunningStream(draining.url)
            assert draining.pid is not None
            os.kill(draining.pid, signal.SIGTERM)
            wait_for(lambda: lb.worker_stats(draining.url)["health"] == "draining", 5, "drain")
            stats = lb.stats()
            assert (
                stats["balancer"]["capacity"] == 4 and stats["balancer"]["workers_in_rotation"] == 1
            )
            assert not lb.worker_stats(draining.url)["in_rotation"]
            served = [stream(lb.url)[0].headers["x-upstream-worker"] for _ in range(3)]
            assert served == [fast[0].url] * 3
            assert httpx.get(f"{lb.url}/health").json()["status"] == "degraded"
            assert running.finish()[-1] == "done"
    finally:
        draining.stop()


def test_capacity_comes_from_the_workers_health() -> None:
    with LiveServer(endless(capacity=3)) as upstream, live_balancer([upstream.url]) as lb:
        assert lb.worker_stats(upstream.url)["capacity"] == 3


def _status(url: str) -> str:
    import httpx

    status: str = httpx.get(f"{url}/health").json()["status"]
    return status


def test_health_lists_the_languages_every_ready_worker_speaks(logs: Path) -> None:
    # Any ready worker may get the next request: a language only some speak is not offered.
    flags = ("--chunks", "2", "--delay", "0.01")
    wide, narrow = ("--languages", "en,fr,ja,zh"), ("--languages", "zh,en,fr")
    with fake_workers((*flags, *wide), (*flags, *narrow), log_dir=logs) as (a, b):
        with live_balancer([a.url, b.url]) as lb:
            assert httpx.get(f"{lb.url}/health").json()["languages"] == ["en", "fr", "zh"]
            reported = lb.worker_stats(a.url)["worker_reported"]
            assert reported["languages"] == ["en", "fr", "ja", "zh"]
        with live_balancer([a.url]) as lb:
            assert httpx.get(f"{lb.url}/health").json()["languages"] == ["en", "fr", "ja", "zh"]
