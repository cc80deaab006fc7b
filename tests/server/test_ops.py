"""`/health` through loading and readiness, and `/metrics` in Prometheus format."""

from __future__ import annotations

import threading

import httpx
from prometheus_client.parser import text_string_to_metric_families

from server.app import create_app
from server.config import ServerConfig
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
