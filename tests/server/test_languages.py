"""A request's language on every endpoint, through a real uvicorn server (fake engines that
speak English only, or the multilingual model's 23 languages): it reaches the engine, lower
case, `en` when not given; a language the model does not speak (or no language code at all)
is refused in each API's own error shape, with the languages the model speaks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from server.config import ServerConfig
from server.engine.schema import DEFAULT_LANGUAGE
from tests.fakes import MULTILINGUAL_LANGUAGES, FakeEngine, multilingual_fake
from tests.live_server import LiveServer
from tests.server.conftest import serving, wait_ready
from tests.sse import iter_events

ENGLISH_ONLY = (DEFAULT_LANGUAGE,)


@pytest.fixture(params=["english", "multilingual"])
def fake(request: pytest.FixtureRequest) -> FakeEngine:
    """Overrides conftest's: every test runs against both kinds of model."""
    return FakeEngine() if request.param == "english" else multilingual_fake()


@pytest.fixture
def multilingual(base_config: ServerConfig) -> Iterator[tuple[LiveServer, FakeEngine]]:
    engine = multilingual_fake()
    with serving(base_config, engine) as live:
        wait_ready(live.url)
        yield live, engine


def _unspoken(fake: FakeEngine) -> str:
    """A well-formed code the model does not speak."""
    return "fr" if fake.languages == ENGLISH_ONLY else "th"


def _listed(fake: FakeEngine) -> str:
    return ", ".join(fake.languages)


# --- what each API sends, and how each answers -------------------------------------------------


def _form(server: LiveServer, path: str, language: str | None) -> httpx.Response:
    data = {"text": "Hello."} | ({} if language is None else {"language": language})
    return httpx.post(f"{server.url}{path}", data=data, timeout=30)


def _openai(server: LiveServer, language: str | None) -> httpx.Response:
    body: dict[str, Any] = {"input": "Hello.", "response_format": "wav"}
    body |= {} if language is None else {"language": language}
    return httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=30)


def _elevenlabs(server: LiveServer, path: str, language: str | None) -> httpx.Response:
    body: dict[str, Any] = {"text": "Hello."}
    body |= {} if language is None else {"language_code": language}
    url = f"{server.url}/v1/text-to-speech/default{path}?output_format=pcm_24000"
    return httpx.post(url, json=body, timeout=30)


def _ws(server: LiveServer, path: str) -> ClientConnection:
    return connect(server.url.replace("http://", "ws://") + path, open_timeout=10)


def _seed_socket_reply(socket: ClientConnection) -> dict[str, Any]:
    """The request's last message (complete or error), past its audio."""
    while True:
        frame = socket.recv(timeout=30)
        if isinstance(frame, str) and json.loads(frame)["type"] in ("complete", "error"):
            return dict(json.loads(frame))


def _seed_request(path: str, language: str | None) -> dict[str, Any]:
    extra = {} if language is None else {"language": language}
    if path == "/ws/tts":
        return {"text": "Hello.", **extra}
    return {"type": "stream_request", "data": {"input": "Hello.", **extra}}


def _elevenlabs_socket_path(path: str, language: str | None) -> str:
    query = "output_format=pcm_24000" + ("" if language is None else f"&language_code={language}")
    return f"/v1/text-to-speech/default/{path}?{query}"


def _elevenlabs_socket_turn(socket: ClientConnection, multi: bool) -> list[dict[str, Any]]:
    """One utterance, to its isFinal."""
    context = {"context_id": "c"} if multi else {}
    for message in ({"text": "Hello. ", "flush": True}, {"text": "", "flush": True}):
        socket.send(json.dumps({**message, **context}))
    socket.send(json.dumps({**context, "close_context": True} if multi else {"text": ""}))
    messages: list[dict[str, Any]] = []
    while not messages or messages[-1].get("isFinal") is not True:
        messages.append(json.loads(socket.recv(timeout=30)))
    return messages


# --- /health -----------------------------------------------------------------------------------


def test_health_lists_the_languages_of_the_loaded_model(
    server: LiveServer, fake: FakeEngine
) -> None:
    languages = httpx.get(f"{server.url}/health").json()["languages"]
    assert languages == list(fake.languages)
    assert languages in (["en"], list(MULTILINGUAL_LANGUAGES))


def test_a_language_this_host_cannot_run_is_not_offered_and_health_says_why(
    base_config: ServerConfig,
) -> None:
    # The multilingual model speaks Hebrew, but its text front-end is not installed here.
    spoken = tuple(code for code in MULTILINGUAL_LANGUAGES if code != "he")
    why = {"he": "Hebrew diacritics need dicta_onnx, which is not installed"}
    engine = multilingual_fake(languages=spoken, unavailable_languages=why)
    with serving(base_config, engine) as live:
        wait_ready(live.url)
        health = httpx.get(f"{live.url}/health").json()
        assert "he" not in health["languages"] and health["unavailable_languages"] == why
        response = _form(live, "/synthesize", "he")
        assert response.status_code == 422 and response.json()["field"] == "language"
        assert not engine.requests


# --- the language reaches the engine -----------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "engine_gets"),
    [(None, "en"), ("", "en"), ("JA", "ja"), ("pt-BR", "pt"), ("zh_Hans", "zh"), (" de ", "de")],
)
def test_the_form_endpoints_pass_the_language_on_normalised(
    multilingual: tuple[LiveServer, FakeEngine], given: str | None, engine_gets: str
) -> None:
    live, engine = multilingual
    with httpx.stream(
        "POST", f"{live.url}/synthesize-stream", data={"text": "Hi.", "language": given or ""}
    ) as response:
        assert list(iter_events(response))[-1].event == "done"
    assert engine.requests[-1].language == engine_gets
    assert _form(live, "/synthesize", given).status_code == 200
    assert engine.requests[-1].language == engine_gets


def test_every_endpoint_passes_the_language_on(
    multilingual: tuple[LiveServer, FakeEngine],
) -> None:
    live, engine = multilingual
    sent: list[str] = []

    def took(language: str) -> None:
        sent.append(language)
        assert engine.requests[-1].language == language

    assert _openai(live, "ja").status_code == 200
    took("ja")
    for path in ("", "/stream", "/with-timestamps", "/stream/with-timestamps"):
        assert _elevenlabs(live, path, "AR").status_code == 200
        took("ar")
    url = f"{live.url}/v1/text-to-speech/default?output_format=pcm_24000&language_code=sv"
    assert httpx.post(url, json={"text": "Hej."}, timeout=30).status_code == 200
    took("sv")  # the query, when the body has none
    for path, multi in (("stream-input", False), ("multi-stream-input", True)):
        with _ws(live, _elevenlabs_socket_path(path, "Es")) as socket:
            assert "isFinal" in _elevenlabs_socket_turn(socket, multi)[-1]
        took("es")
    for path in ("/ws/tts", "/ws/stream/audio"):
        with _ws(live, path) as socket:
            socket.send(json.dumps(_seed_request(path, "hi")))
            assert _seed_socket_reply(socket)["type"] == "complete"
            took("hi")
            socket.send(json.dumps(_seed_request(path, None)))  # each request its own
            assert _seed_socket_reply(socket)["type"] == "complete"
            took("en")
    assert len(sent) == 12  # every endpoint, and a socket's second request


# --- refused: HTTP -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/synthesize-stream", "/synthesize"])
@pytest.mark.parametrize("kind", ["unspoken", "malformed"])
def test_the_form_endpoints_refuse_a_language_with_a_422_listing_the_spoken_ones(
    server: LiveServer, fake: FakeEngine, path: str, kind: str
) -> None:
    language = _unspoken(fake) if kind == "unspoken" else "english"
    response = _form(server, path, language)
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "language" and body["allowed"] == _listed(fake)
    assert language in body["error"] and _listed(fake) in body["error"]
    assert fake.requests == []


@pytest.mark.parametrize("language", ["unspoken", "malformed", 42])
def test_openai_refuses_a_language_in_its_error_shape(
    server: LiveServer, fake: FakeEngine, language: object
) -> None:
    given = {"unspoken": _unspoken(fake), "malformed": "e"}.get(str(language), language)
    response = httpx.post(
        f"{server.url}/v1/audio/speech", json={"input": "Hi.", "language": given}, timeout=30
    )
    assert response.status_code == 400  # OpenAI's status for every invalid parameter
    error = response.json()["error"]
    assert error["param"] == "language" and error["type"] == "invalid_request_error"
    assert _listed(fake) in error["message"]
    assert fake.requests == []


@pytest.mark.parametrize("path", ["", "/stream", "/with-timestamps", "/stream/with-timestamps"])
def test_elevenlabs_http_refuses_a_language_code_in_its_error_shape(
    server: LiveServer, fake: FakeEngine, path: str
) -> None:
    for language in (_unspoken(fake), "klingon"):
        response = _elevenlabs(server, path, language)
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert detail["status"] == "invalid_language_code"
        assert "language_code" in detail["message"] and _listed(fake) in detail["message"]
    assert fake.requests == []


# --- refused: WebSockets -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["stream-input", "multi-stream-input"])
@pytest.mark.parametrize("kind", ["unspoken", "malformed"])
def test_elevenlabs_sockets_refuse_a_language_code_with_an_error_and_a_1008_close(
    server: LiveServer, fake: FakeEngine, path: str, kind: str
) -> None:
    language = _unspoken(fake) if kind == "unspoken" else "x1"
    with _ws(server, _elevenlabs_socket_path(path, language)) as socket:
        error = json.loads(socket.recv(timeout=10))
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
    assert error["field"] == "language_code" and error["error"] == "invalid_language_code"
    assert error["code"] == 422 and _listed(fake) in error["message"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert fake.requests == []


@pytest.mark.parametrize("path", ["/ws/tts", "/ws/stream/audio"])
@pytest.mark.parametrize("kind", ["unspoken", "malformed"])
def test_seed_sockets_refuse_a_language_and_the_connection_stays(
    server: LiveServer, fake: FakeEngine, path: str, kind: str
) -> None:
    language = _unspoken(fake) if kind == "unspoken" else "123"
    with _ws(server, path) as socket:
        socket.send(json.dumps(_seed_request(path, language)))
        error = _seed_socket_reply(socket)
        assert error["type"] == "error" and error["field"] == "language"
        assert error["allowed"] == _listed(fake) and _listed(fake) in error["error"]
        socket.send(json.dumps(_seed_request(path, "EN")))
        assert _seed_socket_reply(socket)["type"] == "complete"
    assert [r.language for r in fake.requests] == ["en"]
