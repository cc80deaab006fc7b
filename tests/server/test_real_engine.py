"""Every endpoint once with the real engine on the full-size random checkpoint."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import soundfile

from server.app import create_app
from server.config import ServerConfig
from server.engine.engine import EngineConfig, StreamingEngine
from server.engine.loading import LoadedModel
from tests.audio import wav_bytes
from tests.live_server import LiveServer
from tests.server.conftest import wait_ready
from tests.sse import iter_events

pytestmark = pytest.mark.model
FORM = {"text": "Real engine over HTTP.", "seed": "21", "max_new_tokens": "24", "chunk_size": "10"}


@pytest.fixture(scope="module")
def real_server(
    turbo_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    # The serial path (one stream at a time); the batched one is tested below.
    config = ServerConfig(voices_dir=tmp_path_factory.mktemp("voices"), max_streams=1, max_batch=1)
    engine = StreamingEngine(turbo_model, EngineConfig(first_chunk_tokens=8))
    with LiveServer(create_app(config, lambda: engine)) as live:
        wait_ready(live.url)
        yield live


def test_stream_and_regular_give_the_same_tokens(real_server: LiveServer) -> None:
    with httpx.stream(
        "POST", f"{real_server.url}/synthesize-stream", data=FORM, timeout=120
    ) as response:
        events = list(iter_events(response))
    chunks = [e.json() for e in events if e.event == "audio_chunk"]
    assert [c["chunk_id"] for c in chunks] == list(range(1, len(chunks) + 1))
    assert len(chunks) >= 3
    done = events[-1].json()
    assert events[-1].event == "done" and done["total_chunks"] == len(chunks)
    assert done["metrics"]["speech_tokens"] == 24 and done["metrics"]["token_cap_hit"]
    streamed_bytes = sum(len(base64.b64decode(c["audio_chunk"])) for c in chunks)
    assert streamed_bytes == (24 + 3) * 960 * 2  # tokens + 3 trailing silence, 16-bit

    regular = httpx.post(f"{real_server.url}/synthesize", data=FORM, timeout=120)
    assert regular.status_code == 200
    assert regular.headers["x-speech-tokens-digest"] == done["metrics"]["speech_tokens_digest"]
    audio, _ = soundfile.read(io.BytesIO(regular.content))
    assert audio.shape[0] * 2 == streamed_bytes


def test_voice_upload_computes_real_conditionals(real_server: LiveServer, tmp_path: Path) -> None:
    created = httpx.post(
        f"{real_server.url}/voices",
        data={"name": "Real"},
        files={"audio": ("v.wav", wav_bytes(6.0), "audio/wav")},
        timeout=120,
    )
    assert created.status_code == 201
    form = FORM | {"voice": created.json()["id"], "max_new_tokens": "12"}
    with httpx.stream(
        "POST", f"{real_server.url}/synthesize-stream", data=form, timeout=120
    ) as response:
        assert list(iter_events(response))[-1].event == "done"


def test_disconnect_frees_the_real_engine(real_server: LiveServer) -> None:
    form = FORM | {"max_new_tokens": "400"}
    started = time.monotonic()
    with httpx.stream(
        "POST", f"{real_server.url}/synthesize-stream", data=form, timeout=120
    ) as response:
        events = iter_events(response)
        assert next(events).event == "audio_chunk"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        health = httpx.get(f"{real_server.url}/health").json()
        if health["active_streams"] == 0:
            break
        time.sleep(0.05)
    assert health["active_streams"] == 0
    # The next request gets the device right away, not after 400 tokens (~30 s here).
    regular = httpx.post(
        f"{real_server.url}/synthesize", data=FORM | {"max_new_tokens": "5"}, timeout=120
    )
    assert regular.status_code == 200
    assert time.monotonic() - started < 25


def test_metrics_count_real_requests(real_server: LiveServer) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{real_server.url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert sum(s.value for s in families["tts_generated_audio_seconds"].samples) > 0
    assert any(s.value > 0 for s in families["tts_requests"].samples)


def test_batched_worker_serves_concurrent_streams(turbo_model: LoadedModel, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    config = ServerConfig(voices_dir=tmp_path / "voices", max_streams=2, max_batch=2)
    engine = StreamingEngine(turbo_model, EngineConfig(first_chunk_tokens=8))

    def stream(seed: int) -> list[int]:
        form = FORM | {"seed": str(seed), "max_new_tokens": "12"}
        with httpx.stream(
            "POST", f"{live.url}/synthesize-stream", data=form, timeout=300
        ) as response:
            events = list(iter_events(response))
        assert events[-1].event == "done"
        return [e.json()["chunk_id"] for e in events if e.event == "audio_chunk"]

    with LiveServer(create_app(config, lambda: engine)) as live:
        wait_ready(live.url)
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(stream, (31, 32)))
        health = httpx.get(f"{live.url}/health").json()
    assert all(ids == list(range(1, len(ids) + 1)) for ids in results)
    assert health["active_streams"] == 0 and health["capacity"] == 2
