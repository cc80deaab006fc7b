"""`POST /synthesize`: one WAV with timings in the headers."""

from __future__ import annotations

import io
import time

import httpx
import pytest
import soundfile

from server.config import ServerConfig
from tests.fakes import FakeEngine
from tests.live_server import LiveServer
from tests.server.conftest import serving, wait_ready


def test_synthesize_returns_a_wav_with_timing_headers(server: LiveServer, fake: FakeEngine) -> None:
    response = httpx.post(f"{server.url}/synthesize", data={"text": "Hello.", "seed": "9"})
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    audio, rate = soundfile.read(io.BytesIO(response.content))
    assert rate == 24000 and audio.shape == (5 * int(0.2 * 24000),)
    for header in ("x-total-latency", "x-audio-duration", "x-rtf", "x-queue-wait"):
        assert float(response.headers[header]) >= 0
    assert response.headers["x-seed"] == "9"
    assert response.headers["x-token-cap-hit"] == "false"
    assert len(response.headers["x-speech-tokens-digest"]) == 16


def test_synthesize_validates_like_the_stream(server: LiveServer) -> None:
    response = httpx.post(f"{server.url}/synthesize", data={"text": "Hi", "cfg_weight": "7"})
    assert response.status_code == 422 and response.json()["field"] == "cfg_weight"


def test_client_leaving_a_regular_synthesis_stops_it(
    base_config: ServerConfig, fake: FakeEngine
) -> None:
    fake.chunks, fake.delay = 200, 0.05
    with serving(base_config, fake) as live:
        wait_ready(live.url)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{live.url}/synthesize", data={"text": "Long."}, timeout=0.5)
        deadline = time.monotonic() + 5
        while fake.cancelled == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        health = httpx.get(f"{live.url}/health").json()
    assert fake.cancelled == 1 and fake.produced < 50
    assert health["active_streams"] == 0
