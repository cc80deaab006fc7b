"""ElevenLabs' text-in WebSockets over a real uvicorn server with a real WebSocket client,
driven the way the stock LiveKit and pipecat plugins drive them (fake engine)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.sync.client import ClientConnection, connect

from server.config import ServerConfig
from tests.fakes import FakeEngine
from tests.live_server import LiveServer
from tests.server.conftest import serving, wait_ready

CHUNK_BYTES = 2 * int(0.2 * 24000)  # one fake chunk as pcm_24000
MULTI = "/v1/text-to-speech/default/multi-stream-input?output_format=pcm_24000"
SINGLE = "/v1/text-to-speech/default/stream-input?output_format=pcm_24000"


@pytest.fixture
def contexts_server(base_config: ServerConfig, fake: FakeEngine) -> Iterator[LiveServer]:
    """Room for several contexts at once (each is a running stream)."""
    config = replace(base_config, max_streams=5, max_queue=0, max_batch=5)
    with serving(config, fake) as live:
        wait_ready(live.url)
        yield live


def _ws(server: LiveServer, path: str) -> ClientConnection:
    return connect(server.url.replace("http://", "ws://") + path, open_timeout=10)


def _send(socket: ClientConnection, **message: Any) -> None:
    socket.send(json.dumps(message))


def _end_turn(socket: ClientConnection, context: str) -> None:
    """The plugins' end of a turn: an empty flush (the input is complete), then close."""
    _send(socket, text="", context_id=context, flush=True)
    _send(socket, context_id=context, close_context=True)


def _pipecat_turn(socket: ClientConnection, context: str) -> None:
    """A pipecat TTSSpeakFrame (or an LLM turn's end): all of it at once."""
    _send(socket, text=" ", context_id=context)
    _send(socket, text="Hello there, friend. ", context_id=context)
    _send(socket, context_id=context, flush=True)
    _send(socket, context_id=context, close_context=True)


def _wait_for_cancel(fake: FakeEngine, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while fake.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.02)


def _until_final(
    socket: ClientConnection, context: str | None = None
) -> tuple[bytes, list[dict[str, Any]]]:
    """Audio and messages up to `context`'s isFinal (stream-input: the isFinal)."""
    audio, messages = b"", []
    while True:
        message = json.loads(socket.recv(timeout=30))
        messages.append(message)
        if context is None or message.get("contextId") == context:
            if message.get("isFinal") is True:
                return audio, messages
            audio += base64.b64decode(message.get("audio") or "")


def test_livekit_turn_flush_then_close_context_gets_all_audio_then_is_final(
    server: LiveServer,
) -> None:
    with _ws(server, MULTI) as socket:
        _send(
            socket,
            text=" ",
            context_id="c1",
            voice_settings={"stability": 0.5, "similarity_boost": 0.8, "speed": 1.0},
            generation_config={"chunk_length_schedule": [120, 160, 250, 290]},
        )
        for word in ("Hello ", "there, ", "friend. "):
            _send(socket, text=word, context_id="c1")
        _send(socket, text="", context_id="c1", flush=True)
        _send(socket, context_id="c1", close_context=True)
        audio, messages = _until_final(socket, "c1")
    assert len(audio) == 5 * CHUNK_BYTES
    final = messages[-1]
    assert final == {"isFinal": True, "contextId": "c1", "context_id": "c1"}  # alone
    for message in messages[:-1]:
        assert message["isFinal"] is False and message["contextId"] == "c1"
        assert message["context_id"] == "c1" and "alignment" not in message


def test_pipecat_interruption_stops_generation_and_is_final_comes_promptly(
    server: LiveServer, fake: FakeEngine
) -> None:
    fake.chunks, fake.delay = 100, 0.05
    with _ws(server, MULTI) as socket:
        _send(socket, text=" ", context_id="turn-1")
        _send(socket, text="A long answer that the user interrupts. ", context_id="turn-1")
        first = json.loads(socket.recv(timeout=30))
        assert first["contextId"] == "turn-1" and first["audio"]
        started = time.monotonic()
        _send(socket, context_id="turn-1", close_context=True)
        audio, _ = _until_final(socket, "turn-1")
        took = time.monotonic() - started
        # The next turn opens a new context on the same socket.
        fake.chunks, fake.delay = 1, 0.02
        _send(socket, text="Next turn. ", context_id="turn-2", flush=True)
        _end_turn(socket, "turn-2")
        next_audio, _ = _until_final(socket, "turn-2")
    assert took < 5 and len(audio) < 99 * CHUNK_BYTES
    assert fake.cancelled == 1 and len(next_audio) == CHUNK_BYTES


@pytest.mark.parametrize(
    "before_close",
    [
        [("Hello there. ", True), ("How are you? ", True)],
        [("Hello there. ", True), ("", False)],
        [("Hello there. ", True), ("", True), ("How are you? ", True)],
    ],
    ids=["sentences-flushed", "keep-alive-is-no-end", "text-after-the-end"],
)
def test_close_context_without_the_end_of_input_is_an_interruption(
    server: LiveServer, fake: FakeEngine, before_close: list[tuple[str, bool]]
) -> None:
    """LiveKit in auto mode (its default) sends every sentence with flush: true and, when the
    user interrupts, only close_context. Without an empty flush just before, close_context
    stops generation at once: nobody will hear the rest."""
    fake.chunks, fake.delay = 100, 0.05
    with _ws(server, MULTI) as socket:
        _send(socket, text=" ", context_id="auto")
        for text, flush in before_close:
            _send(socket, text=text, context_id="auto", flush=flush)
        assert json.loads(socket.recv(timeout=30))["audio"]
        started = time.monotonic()
        _send(socket, context_id="auto", close_context=True)
        audio, messages = _until_final(socket, "auto")
        took = time.monotonic() - started
    assert took < 5 and fake.cancelled == 1 and len(audio) < 99 * CHUNK_BYTES
    assert messages[-1] == {"isFinal": True, "contextId": "auto", "context_id": "auto"}


def test_sentences_flushed_one_by_one_then_the_end_of_input_get_all_audio(
    server: LiveServer, fake: FakeEngine
) -> None:
    """LiveKit's auto mode at the normal end of a turn: each sentence with flush: true, then
    {"text": "", "flush": true} and close_context."""
    with _ws(server, MULTI) as socket:
        _send(socket, text=" ", context_id="auto")
        for sentence in ("Hello there. ", "How are you? "):
            _send(socket, text=sentence, context_id="auto", flush=True)
        _end_turn(socket, "auto")
        audio, _ = _until_final(socket, "auto")
    assert len(audio) == 2 * 5 * CHUNK_BYTES and fake.cancelled == 0  # 5 chunks a sentence


def test_pipecat_end_of_turn_flush_without_text_gets_all_audio(
    server: LiveServer, fake: FakeEngine
) -> None:
    """pipecat ends a turn with {"flush": true} (no text field), then close_context."""
    with _ws(server, MULTI) as socket:
        _pipecat_turn(socket, "turn")
        audio, _ = _until_final(socket, "turn")
    assert len(audio) == 5 * CHUNK_BYTES and fake.cancelled == 0


def test_contexts_interleave_and_each_gets_its_own_final(
    contexts_server: LiveServer, fake: FakeEngine
) -> None:
    with _ws(contexts_server, MULTI) as socket:
        for context in ("a", "b"):
            _send(socket, text=" ", context_id=context)
            _send(socket, text=f"Context {context}. ", context_id=context, flush=True)
            _end_turn(socket, context)
        audio: dict[str, bytes] = {"a": b"", "b": b""}
        finals: list[str] = []
        while len(finals) < 2:
            message = json.loads(socket.recv(timeout=30))
            if message.get("isFinal"):
                finals.append(message["contextId"])
            else:
                audio[message["contextId"]] += base64.b64decode(message["audio"])
    assert sorted(finals) == ["a", "b"]
    assert audio == {"a": audio["a"], "b": audio["b"]} and len(audio["a"]) == 5 * CHUNK_BYTES
    assert len(audio["b"]) == 5 * CHUNK_BYTES


def test_keep_alives_generate_nothing_and_keep_the_socket_open(server: LiveServer) -> None:
    with _ws(server, MULTI + "&inactivity_timeout=1") as socket:
        _send(socket, text="")  # pipecat before any context
        _send(socket, text=" ", context_id="k")
        for _ in range(3):
            time.sleep(0.6)
            _send(socket, text="", context_id="k")  # keep-alive
        _send(socket, text="Now speak. ", context_id="k", flush=True)
        _send(socket, text="", context_id="k", flush=True)  # the end of the input
        _send(socket, text="", context_id="k")  # a keep-alive does not undo it
        _send(socket, context_id="k", close_context=True)
        audio, _ = _until_final(socket, "k")
    assert len(audio) == 5 * CHUNK_BYTES


def test_stream_input_ends_with_empty_text_then_is_final_and_the_server_closes(
    server: LiveServer,
) -> None:
    with _ws(server, SINGLE) as socket:
        _send(socket, text=" ", try_trigger_generation=True, voice_settings=None)
        _send(socket, text="Hello world. ", try_trigger_generation=False)
        _send(socket, text="")
        audio, messages = _until_final(socket)
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
    assert len(audio) == 5 * CHUNK_BYTES and messages[-1] == {"isFinal": True}
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


def test_close_socket_finishes_flushed_contexts_then_closes(server: LiveServer) -> None:
    with _ws(server, MULTI) as socket:
        _send(socket, text="Flushed text. ", context_id="z", flush=True)
        _send(socket, close_socket=True)
        audio, _ = _until_final(socket, "z")
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
    assert len(audio) == 5 * CHUNK_BYTES
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


def test_settings_and_seed_reach_the_request(server: LiveServer, fake: FakeEngine) -> None:
    path = MULTI.replace("/default/", "/alloy/") + "&seed=77&model_id=eleven_flash_v2_5"
    with _ws(server, path) as socket:
        _send(
            socket,
            text="Settings. ",
            context_id="s",
            flush=True,
            voice_settings={"style": 1.0, "temperature": 0.6},
        )
        _end_turn(socket, "s")
        _until_final(socket, "s")
    request = fake.requests[-1]
    assert request.seed == 77 and request.voice is None  # "alloy": the built-in voice
    assert (request.params.exaggeration, request.params.temperature) == (2.0, 0.6)


def test_more_contexts_than_allowed_is_an_error_and_a_1008_close(
    base_config: ServerConfig, fake: FakeEngine
) -> None:
    config = replace(base_config, max_streams=5, max_batch=5, max_socket_contexts=2)
    with serving(config, fake) as live:
        wait_ready(live.url)
        with _ws(live, MULTI) as socket:
            for context in ("one", "two", "three"):
                _send(socket, text=" ", context_id=context)
            error = json.loads(socket.recv(timeout=10))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    socket.recv(timeout=10)
    assert error["error"] == "max_active_conversations" and error["code"] == 1008
    assert "(2)" in error["message"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("output_format=wav_44100", "output_format"),
        ("output_format=pcm_24000&language_code=sw", "language_code"),
        ("output_format=pcm_24000&inactivity_timeout=soon", "inactivity_timeout"),
        ("output_format=pcm_24000&seed=-4", "seed"),
    ],
)
def test_a_bad_query_parameter_is_an_error_naming_it_and_a_1008_close(
    server: LiveServer, query: str, field: str
) -> None:
    with _ws(server, f"/v1/text-to-speech/default/multi-stream-input?{query}") as socket:
        error = json.loads(socket.recv(timeout=10))
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
    assert error["field"] == field and field in error["message"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


@pytest.mark.parametrize(
    ("frame", "code"),
    [("{broken", 1007), ("[1]", 1007), (b"\x01\x02", 1003)],
    ids=["invalid-json", "not-an-object", "binary"],
)
def test_malformed_frames_close_the_socket(
    server: LiveServer, frame: str | bytes, code: int
) -> None:
    with _ws(server, MULTI) as socket:
        socket.send(frame)
        error = json.loads(socket.recv(timeout=10))
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
    assert error["error"] == "invalid_message" and error["message"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code


def test_inactivity_closes_the_socket_with_input_timeout_exceeded(server: LiveServer) -> None:
    with _ws(server, MULTI + "&inactivity_timeout=1") as socket:
        _send(socket, text=" ", context_id="idle")
        error = json.loads(socket.recv(timeout=10))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                socket.recv(timeout=10)
    assert error["error"] == "input_timeout_exceeded"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_text_over_the_limits_closes_the_socket(
    base_config: ServerConfig, fake: FakeEngine
) -> None:
    config = replace(base_config, max_text_chars=50, max_context_chars=80)
    with serving(config, fake) as live:
        wait_ready(live.url)
        with _ws(live, MULTI) as socket:
            _send(socket, text="x" * 51, context_id="long")
            too_long = json.loads(socket.recv(timeout=10))
        with _ws(live, MULTI) as socket:
            _send(socket, text="word " * 9, context_id="c")
            _send(socket, text="word " * 9, context_id="c")
            messages = []
            with pytest.raises(ConnectionClosed):
                while True:
                    messages.append(json.loads(socket.recv(timeout=10)))
    assert too_long["error"] == "message_too_long"
    assert any(m.get("error") == "context_too_long" for m in messages)


def test_per_context_errors_name_the_context_and_keep_the_socket(
    server: LiveServer,
) -> None:
    with _ws(server, MULTI.replace("/default/", "/nobody/")) as socket:
        _send(socket, text="Unknown voice. ", context_id="v")
        error = json.loads(socket.recv(timeout=10))
        assert error["contextId"] == "v" and error["field"] == "voice"
        _send(socket, context_id="v", close_context=True)
        closed_error = json.loads(socket.recv(timeout=10))
    assert closed_error["field"] == "context_id" and closed_error["contextId"] == "v"


def test_settings_on_an_open_context_and_text_after_close_are_errors(
    server: LiveServer, fake: FakeEngine
) -> None:
    fake.chunks, fake.delay = 20, 0.05
    with _ws(server, MULTI) as socket:
        _send(socket, text="Open. ", context_id="o", flush=True)
        _send(socket, text=" ", context_id="o", voice_settings={"style": 0.2})
        errors = [json.loads(socket.recv(timeout=10))]
        while "error" not in errors[-1]:
            errors.append(json.loads(socket.recv(timeout=10)))
        _end_turn(socket, "o")
        _send(socket, text="More. ", context_id="o")
        _, messages = _until_final(socket, "o")
    assert "already open" in errors[-1]["message"]
    assert any("closing" in m.get("message", "") for m in messages)


def test_client_leaving_stops_generation(server: LiveServer, fake: FakeEngine) -> None:
    fake.chunks, fake.delay = 100, 0.05
    with _ws(server, MULTI) as socket:
        _send(socket, text="Going away now. ", context_id="g", flush=True)
        json.loads(socket.recv(timeout=30))
    _wait_for_cancel(fake)
    assert fake.cancelled == 1 and fake.produced < 100


def test_the_inactivity_timeout_spares_contexts_that_are_finishing(
    server: LiveServer, fake: FakeEngine
) -> None:
    fake.chunks, fake.delay = 12, 0.2  # 2.4 s of generation after the last message
    with _ws(server, MULTI + "&inactivity_timeout=1") as socket:
        _send(socket, text="Slow to finish. ", context_id="f", flush=True)
        _end_turn(socket, "f")
        audio, messages = _until_final(socket, "f")
    assert len(audio) == 12 * CHUNK_BYTES
    assert not any("error" in m for m in messages)


# --- Found by the stock clients (test_stock_clients.py), replayed without them ---------------


def test_a_second_close_context_stopped_nothing_regression(
    server: LiveServer, fake: FakeEngine
) -> None:
    """pipecat interrupts a turn whose context it closed already by closing it again: the
    worker went on generating the whole turn for audio pipecat throws away."""
    fake.chunks, fake.delay = 100, 0.05
    with _ws(server, MULTI) as socket:
        _pipecat_turn(socket, "turn")
        assert json.loads(socket.recv(timeout=10))["audio"]
        _send(socket, context_id="turn", close_context=True)
        _until_final(socket, "turn")
    assert fake.cancelled == 1 and fake.produced < 50


def test_a_client_leaving_after_close_socket_went_unnoticed_regression(
    server: LiveServer, fake: FakeEngine
) -> None:
    """While close_socket let the contexts finish, the worker read nothing more: a client that
    left (pipecat closes the socket 2 s after close_socket) was not noticed, and generation
    ran to the end for nobody."""
    fake.chunks, fake.delay = 100, 0.05
    with _ws(server, MULTI) as socket:
        _pipecat_turn(socket, "turn")
        assert json.loads(socket.recv(timeout=10))["audio"]
        _send(socket, close_socket=True)
    _wait_for_cancel(fake)
    assert fake.cancelled == 1 and fake.produced < 50


def test_close_socket_still_lets_closed_contexts_finish(
    server: LiveServer, fake: FakeEngine
) -> None:
    with _ws(server, MULTI) as socket:
        _pipecat_turn(socket, "turn")
        _send(socket, close_socket=True)
        _send(socket, text="Ignored now. ", context_id="late", flush=True)
        audio = b""
        with pytest.raises(ConnectionClosedOK):
            while True:
                message = json.loads(socket.recv(timeout=10))
                assert message.get("contextId") == "turn"
                audio += base64.b64decode(message.get("audio") or "")
    assert fake.cancelled == 0 and len(audio) == 5 * CHUNK_BYTES
