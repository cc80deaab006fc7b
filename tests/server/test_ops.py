"""`/health` through loading, the warm-up and readiness, and `/metrics` in Prometheus format."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import httpx
from prometheus_client.parser import text_string_to_metric_families

from server.app import create_app
from server.config import ServerConfig
from server.warmup import WARMUP_TEXT
from tests.balancer.processes import wait_for
from tests.fakes import FakeEngine
from tests.live_server import LiveServer
from tests.server.conftest import wait_ready
from tests.sse import iter_events


def test_health_reports_loading_until_the_model_is_ready(base_config: ServerConfig) -> None:
    release = threading.Event()
    engine = FakeEngine()

    def slow_factory() -> FakeEngine:
        release.wait(10)
        return engine

    with LiveServer(create_app(base_config, slow_factory)) as live:
        health = httpx.get(f"{live.url}/health").json()
        assert health["status"] == "loading"
        assert {"model", "device", "active_streams", "queued", "capacity"} <= health.keys()
        busy = httpx.post(f"{live.url}/synthesize-stream", data={"text": "Too early."})
        assert busy.status_code == 503 and "loading" in busy.json()["error"]
        assert busy.headers["retry-after"]
        release.set()
        wait_ready(live.url)
        assert httpx.get(f"{live.url}/health").json()["model"] == "fake"


def test_ready_only_after_a_warm_up_through_both_paths(base_config: ServerConfig) -> None:
    engine = FakeEngine(chunks=3, delay=0.2)  # a warm-up of about 1.2 s: watched while loading
    seen: list[tuple[str, int]] = []  # (status, warm-up requests the engine had by then)
    with LiveServer(create_app(replace(base_config, warmup=True), lambda: engine)) as live:
        while not seen or seen[-1][0] == "loading":
            seen.append((httpx.get(f"{live.url}/health").json()["status"], len(engine.requests)))
            time.sleep(0.02)
        assert seen[-1] == ("ready", 2)
        assert ("loading", 1) in seen  # the warm-up ran while /health said loading
        assert [r.text for r in engine.requests] == [WARMUP_TEXT, WARMUP_TEXT]
        assert httpx.get(f"{live.url}/metrics").text.count('outcome="ok"') == 0  # not counted
        with httpx.stream("POST", f"{live.url}/synthesize-stream", data={"text": "Hi."}) as r:
            assert list(iter_events(r))[-1].event == "done"


def test_a_failed_warm_up_fails_the_worker(base_config: ServerConfig) -> None:
    broken = FakeEngine(fail_after=0)
    with LiveServer(create_app(replace(base_config, warmup=True), lambda: broken)) as live:
        wait_for(lambda: httpx.get(f"{live.url}/health").json()["status"] != "loading", 10)
        response = httpx.get(f"{live.url}/health")
        assert response.status_code == 503 and response.json()["status"] == "failed"
        assert "warm-up failed: RuntimeError: fake engine failure" in response.json()["error"]


def test_failed_load_is_reported(base_config: ServerConfig) -> None:
    def broken() -> FakeEngine:
        raise FileNotFoundError("no checkpoint here")

    with LiveServer(create_app(base_config, broken)) as live:
        for _ in range(200):
            response = httpx.get(f"{live.url}/health")
            if response.json()["status"] != "loading":
                break
        assert response.status_code == 503
        assert response.json()["status"] == "failed"
        assert "no checkpoint here" in response.json()["error"]


def test_metrics_parse_and_count_requests(server: LiveServer) -> None:
    with httpx.stream("POST", f"{server.url}/synthesize-stream", data={"text": "Hi."}) as r:
        list(iter_events(r))
    httpx.post(f"{server.url}/synthesize-stream", data={"text": "Hi.", "top_p": "2"})
    text = httpx.get(f"{server.url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {
        (s.labels["endpoint"], s.labels["outcome"]): s.value
        for s in families["tts_requests"].samples
        if s.name == "tts_requests_total"
    }
    assert requests[("synthesize-stream", "ok")] == 1
    for name in (
        "tts_active_streams",
        "tts_queue_depth",
        "tts_queue_wait_seconds",
        "tts_time_to_first_chunk_seconds",
        "tts_rtf",
        "tts_generated_audio_seconds",
        "tts_errors",
    ):
        assert name in families, name
    audio = families["tts_generated_audio_seconds"].samples[0].value
    assert audio == 1.0  # 5 chunks of 0.2 s
