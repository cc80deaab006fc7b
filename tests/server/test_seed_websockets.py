"""The seeds' WebSocket protocols (`/ws/tts`, `/ws/stream/audio`) over a real uvicorn server
with a real WebSocket client, against both runners (the fake engine)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from server.config import ServerConfig
from tests.fakes import FakeEngine
from tests.live_server import LiveServer
from tests.server.conftest import replace, serving, wait_ready

CHUNK_BYTES = 2 * int(0.2 * 24000)


def _ws(server: LiveServer, path: str) -> ClientConnection:
    return connect(server.url.replace("http://", "ws://") + path, open_timeout=10)


def _until_end(socket: ClientConnection) -> tuple[list[bytes], list[dict[str, Any]]]:
    """Frames up to and including the request's last message (complete, error, cancelled)."""
    audio: list[bytes] = []
    messages: list[dict[str, Any]] = []
    while True:
        frame = socket.recv(timeout=30)
        if isinstance(frame, bytes):
            audio.append(frame)
            continue
        messages.append(json.loads(frame))
        if messages[-1]["type"] in ("complete", "error", "cancelled"):
            return audio, messages


def test_tts_streams_binary_pcm_with_metrics_and_completes(server: LiveServer) -> None:
    with _ws(server, "/ws/tts") as socket:
        socket.send(json.dumps({"text": "Hello world", "tokens_per_chunk": 10, "seed": 3}))
        audio, messages = _until_end(socket)
    assert [len(frame) for frame in audio] == [CHUNK_BYTES] * 5
    chunks = [m for m in messages if m["type"] == "audio_chunk"]
    assert [c["chunk_id"] for c in chunks] == [1, 2, 3, 4, 5]
    assert all(c["samples"] * 2 == CHUNK_BYTES and c["sample_rate"] == 24000 for c in chunks)
    assert set(chunks[0]["metrics"]) >= {"first_chunk_latency", "rtf", "total_audio_duration"}
    complete = messages[-1]
    assert complete["type"] == "complete" and complete["stats"]["total_chunks"] == 5
    assert complete["stats"]["seed"] == 3 and complete["stats"]["speech_tokens"] == 25


def test_each_audio_frame_comes_before_its_metrics(server: LiveServer) -> None:
    with _ws(server, "/ws/tts") as socket:
        socket.send(json.dumps({"text": "Order."}))
        kinds: list[str] = []
        while not kinds or kinds[-1] != "complete":
            frame = socket.recv(timeout=30)
            kinds.append("audio" if isinstance(frame, bytes) else json.loads(frame)["type"])
    assert kinds == ["audio", "audio_chunk"] * 5 + ["complete"]


def test_stream_audio_takes_a_stream_request_with_every_parameter(
    server: LiveServer, fake: FakeEngine
) -> None:
    request = {
        "type": "stream_request",
        "data": {
            "input": "Hello from JavaScript!",
            "voice": "alloy",
            "chunk_size": 25,
            "temperature": 0.8,
            "exaggeration": 0.7,
            "seed": 9,
            "max_new_tokens": 40,
            "top_p": 0.9,
        },
    }
    with _ws(server, "/ws/stream/audio") as socket:
        socket.send(json.dumps(request))
        audio, messages = _until_end(socket)
    assert messages[-1]["type"] == "complete" and len(audio) == 5
    sent = fake.requests[-1]
    assert sent.text == "Hello from JavaScript!" and sent.chunk_size == 25
    assert (sent.seed, sent.max_new_tokens, sent.voice) == (9, 40, None)
    assert (sent.params.temperature, sent.params.exaggeration, sent.params.top_p) == (
        0.8,
        0.7,
        0.9,
    )


def test_one_connection_carries_requests_one_after_another(
    server: LiveServer, fake: FakeEngine
) -> None:
    with _ws(server, "/ws/tts") as socket:
        for seed in (1, 2, 3):
            socket.send(json.dumps({"text": f"Request {seed}.", "seed": seed}))
            _, messages = _until_end(socket)
            assert messages[-1]["type"] == "complete"
            assert messages[-1]["stats"]["seed"] == seed
    assert [r.seed for r in fake.requests] == [1, 2, 3]


def test_cancel_stops_the_running_request_and_the_connection_goes_on(
    server: LiveServer, fake: FakeEngine
) -> None:
    fake.chunks, fake.delay = 100, 0.05
    with _ws(server, "/ws/tts") as socket:
        socket.send(json.dumps({"text": "Long."}))
        assert isinstance(socket.recv(timeout=30), bytes)
        socket.send(json.dumps({"type": "cancel"}))
        audio, messages = _until_end(socket)
        assert messages[-1] == {"type": "cancelled"}
        assert len(audio) < 99
        fake.chunks = 2
        socket.send(json.dumps({"text": "Next."}))
        audio, messages = _until_end(socket)
    assert messages[-1]["type"] == "complete" and len(audio) == 2
    assert fake.cancelled == 1


def test_a_second_request_while_one_runs_is_refused_and_the_first_goes_on(
    server: LiveServer, fake: FakeEngine
) -> None:
    fake.delay = 0.1
    with _ws(server, "/ws/tts") as socket:
        socket.send(json.dumps({"text": "First."}))
        socket.send(json.dumps({"text": "Second."}))
        audio, messages = _until_end(socket)
        assert messages[-1]["type"] == "error" and "running" in messages[-1]["error"]
        rest, messages = _until_end(socket)
    assert messages[-1]["type"] == "complete" and len(audio) + len(rest) == 5
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"text": ""}, "text"),
        ({"text": "Hi.", "tokens_per_chunk": 5}, "chunk_size"),
        ({"text": "Hi.", "temperature": "hot"}, "temperature"),
        ({"text": "Hi.", "voice": "nobody"}, "voice"),
    ],
)
def test_a_bad_request_is_an_error_naming_the_field_and_the_connection_stays(
    server: LiveServer, message: dict[str, Any], field: str
) -> None:
    with _ws(server, "/ws/tts") as socket:
        socket.send(json.dumps(message))
        error = json.loads(socket.recv(timeout=10))
        assert error["type"] == "error" and error["field"] == field and error["error"]
        socket.send(json.dumps({"text": "Still here."}))
        _, messages = _until_end(socket)
    assert messages[-1]["type"] == "complete"


def test_unknown_message_type_is_an_error(server: LiveServer) -> None:
    with _ws(server, "/ws/stream/audio") as socket:
        socket.send(json.dumps({"type": "sing", "data": {}}))
        error = json.loads(socket.recv(timeout=10))
    assert error["type"] == "error" and "sing" in error["error"]


@pytest.mark.parametrize(
    ("frame", "code"),
    [("not json", 1007), ("[1, 2]", 1007), (b"\x00\x01", 1003)],
    ids=["invalid-json", "not-an-object", "binary"],
)
def test_a_malformed_frame_closes_the_connection_with_a_reason(
    server: LiveServer, frame: str | bytes, code: int
) -> None:
    with _ws(server, "/ws/tts") as socket:
        socket.send(frame)
        error = json.loads(socket.recv(timeout=10))
        assert error["type"] == "error" and error["error"]
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code


def test_client_leaving_mid_request_stops_generation(server: LiveServer, fake: FakeEngine) -> None:
    fake.chunks, fake.delay = 100, 0.05
    with _ws(server, "/ws/tts") as socket:
        socket.send(json.dumps({"text": "Going away."}))
        assert isinstance(socket.recv(timeout=30), bytes)
    deadline = time.monotonic() + 5
    while fake.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.cancelled == 1 and fake.produced < 100


def test_a_full_worker_says_when_to_retry_and_keeps_the_connection(
    base_config: ServerConfig, fake: FakeEngine
) -> None:
    fake.chunks, fake.delay = 100, 0.05
    with serving(replace(base_config, max_streams=1, max_queue=0), fake) as live:
        wait_ready(live.url)
        with _ws(live, "/ws/tts") as first, _ws(live, "/ws/tts") as second:
            first.send(json.dumps({"text": "Taking the only slot."}))
            assert isinstance(first.recv(timeout=30), bytes)
            second.send(json.dumps({"text": "No room."}))
            error = json.loads(second.recv(timeout=10))
            assert error["type"] == "error" and error["retry_after"] == 2
            first.send(json.dumps({"type": "cancel"}))
            _until_end(first)
            fake.chunks = 1
            second.send(json.dumps({"text": "Room now."}))
            _, messages = _until_end(second)
    assert messages[-1]["type"] == "complete"
