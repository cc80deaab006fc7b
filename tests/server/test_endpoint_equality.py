"""Every speech endpoint gives what the engine gives when called directly (same seed), with
either runner: the HTTP layers add formatting, never different speech."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile

from server.app import create_app
from server.audio import pcm16
from server.config import ServerConfig
from server.engine.engine import EngineConfig, StreamingEngine, SynthesisRequest
from server.engine.loading import LoadedModel
from server.engine.sampling import TURBO_DEFAULTS
from server.engine.schema import FlowWindow
from server.events import token_digest
from tests.live_server import LiveServer
from tests.server.conftest import RUNNER_BATCH_SIZES, wait_ready
from tests.sse import iter_events

pytestmark = pytest.mark.model
TEXT = "Hi there."  # no EOS on random weights: the length cap from the text, 42 tokens
SEED = 5
# One 16-bit step: both sides are the same float audio quantised the same way, so any
# difference beyond rounding means different speech.
PCM_TOLERANCE = 1


@pytest.fixture(scope="module")
def engine(turbo_model: LoadedModel) -> StreamingEngine:
    # Two chunks (10 tokens, then the last 32) with a short flow prompt: what every endpoint
    # adds is formatting, which a short stream shows as well as a long one.
    config = EngineConfig(watermark=False, flow_window=FlowWindow(20, 20), cap_token_margin=20)
    return StreamingEngine(turbo_model, config)


@pytest.fixture(scope="module")
def direct(engine: StreamingEngine) -> dict[str, object]:
    """The engine called directly: streamed chunks and regular synthesis."""
    request = SynthesisRequest(TEXT, TURBO_DEFAULTS, seed=SEED)
    chunks = list(engine.stream(request))
    summary = chunks[-1].summary
    assert summary is not None
    whole = engine.synthesize(request)
    return {
        "stream_pcm": np.frombuffer(pcm16(np.concatenate([c.audio for c in chunks])), "<i2"),
        "whole_pcm": np.frombuffer(pcm16(whole.audio), "<i2"),
        "digest": token_digest(summary.speech_tokens),
        "tokens": len(summary.speech_tokens),
        "whole_digest": token_digest(whole.summary.speech_tokens),
    }


@pytest.fixture(scope="module", params=list(RUNNER_BATCH_SIZES), ids=list(RUNNER_BATCH_SIZES))
def live(
    request: pytest.FixtureRequest,
    engine: StreamingEngine,
    direct: dict[str, object],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    config = ServerConfig(
        voices_dir=tmp_path_factory.mktemp("voices"),
        max_batch=RUNNER_BATCH_SIZES[request.param],
        max_streams=1,
    )
    with LiveServer(create_app(config, lambda: engine)) as server:
        wait_ready(server.url)
        yield server


def _same_audio(got: np.ndarray[Any, Any], expected: object) -> None:
    assert isinstance(expected, np.ndarray)
    assert got.shape == expected.shape
    assert int(np.abs(got.astype(np.int32) - expected.astype(np.int32)).max()) <= PCM_TOLERANCE


FORM = {"text": TEXT, "seed": str(SEED)}


def test_sse_stream_equals_the_engine(live: LiveServer, direct: dict[str, object]) -> None:
    with httpx.stream("POST", f"{live.url}/synthesize-stream", data=FORM, timeout=300) as r:
        events = list(iter_events(r))
    assert events[-1].event == "done"
    done = events[-1].json()["metrics"]
    assert done["speech_tokens_digest"] == direct["digest"]
    assert done["speech_tokens"] == direct["tokens"]
    audio = b"".join(
        base64.b64decode(e.json()["audio_chunk"]) for e in events if e.event == "audio_chunk"
    )
    _same_audio(np.frombuffer(audio, "<i2"), direct["stream_pcm"])


def test_wav_equals_the_engine(live: LiveServer, direct: dict[str, object]) -> None:
    response = httpx.post(f"{live.url}/synthesize", data=FORM, timeout=300)
    assert response.status_code == 200
    assert response.headers["x-speech-tokens-digest"] == direct["whole_digest"]
    audio, rate = soundfile.read(io.BytesIO(response.content), dtype="int16")
    assert rate == 24000
    _same_audio(audio, direct["whole_pcm"])


def test_openai_pcm_equals_the_engine(live: LiveServer, direct: dict[str, object]) -> None:
    body = {"input": TEXT, "voice": "alloy", "response_format": "pcm", "seed": SEED}
    response = httpx.post(f"{live.url}/v1/audio/speech", json=body, timeout=300)
    assert response.status_code == 200 and response.headers["content-type"] == "audio/pcm"
    _same_audio(np.frombuffer(response.content, "<i2"), direct["stream_pcm"])


def test_openai_sse_equals_the_engine(live: LiveServer, direct: dict[str, object]) -> None:
    body = {
        "input": TEXT,
        "voice": "default",
        "response_format": "pcm",
        "stream_format": "sse",
        "seed": SEED,
    }
    with httpx.stream("POST", f"{live.url}/v1/audio/speech", json=body, timeout=300) as r:
        events = [e.json() for e in iter_events(r)]
    assert events[-1]["type"] == "speech.audio.done"
    assert events[-1]["usage"]["output_tokens"] == direct["tokens"]
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    _same_audio(np.frombuffer(audio, "<i2"), direct["stream_pcm"])


def test_seed_websocket_equals_the_engine(live: LiveServer, direct: dict[str, object]) -> None:
    from websockets.sync.client import connect

    url = live.url.replace("http://", "ws://") + "/ws/tts"
    audio, last = b"", None
    with connect(url, open_timeout=30) as socket:
        socket.send(json.dumps({"text": TEXT, "seed": SEED}))
        while last is None or last["type"] not in ("complete", "error"):
            frame = socket.recv(timeout=300)
            if isinstance(frame, bytes):
                audio += frame
            else:
                last = json.loads(frame)
    assert last["type"] == "complete"
    assert last["stats"]["speech_tokens_digest"] == direct["digest"]
    _same_audio(np.frombuffer(audio, "<i2"), direct["stream_pcm"])


def test_elevenlabs_text_in_sent_whole_equals_the_engine(
    live: LiveServer, direct: dict[str, object]
) -> None:
    from websockets.sync.client import connect

    path = "/v1/text-to-speech/default/multi-stream-input"
    url = live.url.replace("http://", "ws://") + f"{path}?output_format=pcm_24000&seed={SEED}"
    audio = b""
    with connect(url, open_timeout=30) as socket:
        socket.send(json.dumps({"text": " ", "context_id": "c"}))
        socket.send(json.dumps({"text": TEXT + " ", "context_id": "c", "flush": True}))
        socket.send(json.dumps({"text": "", "context_id": "c", "flush": True}))  # the end
        socket.send(json.dumps({"context_id": "c", "close_context": True}))
        while True:
            message = json.loads(socket.recv(timeout=300))
            assert "error" not in message, message
            if message["isFinal"]:
                break
            audio += base64.b64decode(message["audio"])
    _same_audio(np.frombuffer(audio, "<i2"), direct["stream_pcm"])


def test_elevenlabs_with_timestamps_equals_the_engine(
    live: LiveServer, direct: dict[str, object]
) -> None:
    url = f"{live.url}/v1/text-to-speech/default/with-timestamps?output_format=pcm_24000"
    response = httpx.post(url, json={"text": TEXT, "seed": SEED}, timeout=300)
    assert response.status_code == 200
    audio = base64.b64decode(response.json()["audio_base64"])
    _same_audio(np.frombuffer(audio, "<i2"), direct["whole_pcm"])
