"""Checks of the key gate shared by the worker's and the balancer's tests: every endpoint kind
with no key, a wrong key, a user key and an admin key, each API's error shape, the browser's
token flow and the per-key stream limit. They run against a URL, so the same checks cover a
worker serving clients directly and the balancer in front of workers."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from access.keys import Role
from tests.audio import wav_bytes

USER_KEY = "test-user-key-6b1d0c6f2a9e4f7e8c3d"
ADMIN_KEY = "test-admin-key-0f5e7a3c9b2d4e6f8a1b"
SOLO_KEY = "test-solo-key-3c8f1e0a7d5b2c9e4f6a"  # a user key allowed one stream at a time
WRONG_KEY = "test-wrong-key-9e2b4d6f8a0c1e3f5a7b"
TIMEOUT = 30.0


def write_keys(path: Path) -> Path:
    """A keys file with each way of giving a key: in clear, and hashed."""
    admin_sha = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()
    path.write_text(
        f"""
[[keys]]
name = "user"
role = "user"
key = "{USER_KEY}"

[[keys]]
name = "admin"
role = "admin"
sha256 = "{admin_sha}"

[[keys]]
name = "solo"
role = "user"
key = "{SOLO_KEY}"
max_streams = 1
"""
    )
    return path


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def xi(key: str) -> dict[str, str]:
    return {"xi-api-key": key}


# --- HTTP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    role: Role
    shape: str  # "native", "openai" or "elevenlabs"
    json: dict[str, Any] | None = None
    form: dict[str, str] | None = None
    upload: bool = False
    admitted: tuple[int, ...] = (200,)  # the statuses of a request the gate let in

    def send(self, url: str, key: str | None) -> httpx.Response:
        headers = {} if key is None else (xi(key) if self.shape == "elevenlabs" else bearer(key))
        files = {"audio": ("v.wav", wav_bytes(6.0), "audio/wav")} if self.upload else None
        return httpx.request(
            self.method,
            url + self.path,
            json=self.json,
            data=self.form,
            files=files,
            headers=headers,
            timeout=TIMEOUT,
        )


ENDPOINTS = [
    Endpoint("sse", "POST", "/synthesize-stream", Role.USER, "native", form={"text": "Hi."}),
    Endpoint("wav", "POST", "/synthesize", Role.USER, "native", form={"text": "Hi."}),
    Endpoint(
        "openai",
        "POST",
        "/v1/audio/speech",
        Role.USER,
        "openai",
        json={"input": "Hi.", "voice": "alloy", "response_format": "pcm"},
    ),
    Endpoint(
        "elevenlabs",
        "POST",
        "/v1/text-to-speech/default/stream?output_format=pcm_24000",
        Role.USER,
        "elevenlabs",
        json={"text": "Hi."},
    ),
    Endpoint("list voices", "GET", "/voices", Role.USER, "native"),
    Endpoint(
        "create voice",
        "POST",
        "/voices",
        Role.ADMIN,
        "native",
        form={"name": "Gatekeeper"},
        upload=True,
        admitted=(201,),
    ),
    Endpoint(
        "delete voice", "DELETE", "/voices/no-such-voice", Role.ADMIN, "native", admitted=(404,)
    ),
]


def assert_refused(response: httpx.Response, status: int, shape: str) -> dict[str, Any]:
    """A refusal with `status` in the API's own error shape; returns its message and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    return refusal_fields(body, shape)


def refusal_fields(body: Any, shape: str) -> dict[str, Any]:
    if shape == "openai":
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}
        return {"message": error["message"], "code": error["code"]}
    if shape == "elevenlabs":
        detail = body["detail"]
        assert set(detail) == {"status", "message"}
        return {"message": detail["message"], "code": detail["status"]}
    assert set(body) == {"error"} and isinstance(body["error"], str)
    return {"message": body["error"], "code": None}


def check_endpoint(url: str, endpoint: Endpoint) -> None:
    for key in (None, WRONG_KEY):
        refused = endpoint.send(url, key)
        fields = assert_refused(refused, 401, endpoint.shape)
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert WRONG_KEY not in refused.text
        if key is None:
            assert "Authorization: Bearer" in fields["message"]
    as_user = endpoint.send(url, USER_KEY)
    if endpoint.role is Role.ADMIN:
        fields = assert_refused(as_user, 403, endpoint.shape)
        assert "'user'" in fields["message"] and "admin" in fields["message"]
    else:
        assert as_user.status_code in endpoint.admitted, as_user.text
    as_admin = endpoint.send(url, ADMIN_KEY)
    assert as_admin.status_code in endpoint.admitted, as_admin.text
    if endpoint.upload:  # leave the library as it was
        voice = as_admin.json()["id"]
        deleted = httpx.delete(f"{url}/voices/{voice}", headers=bearer(ADMIN_KEY), timeout=TIMEOUT)
        assert deleted.status_code == 204


# --- WebSockets --------------------------------------------------------------------------


def _seed_tts(socket: ClientConnection) -> bytes:
    socket.send(json.dumps({"text": "Hi."}))
    return _seed_audio(socket)


def _seed_stream_audio(socket: ClientConnection) -> bytes:
    socket.send(json.dumps({"type": "stream_request", "data": {"input": "Hi."}}))
    return _seed_audio(socket)


def _seed_audio(socket: ClientConnection) -> bytes:
    audio = b""
    while True:
        frame = socket.recv(timeout=TIMEOUT)
        if isinstance(frame, bytes):
            audio += frame
            continue
        message = json.loads(frame)
        assert message["type"] != "error", message
        if message["type"] == "complete":
            return audio


def _stream_input(socket: ClientConnection) -> bytes:
    for message in ({"text": " "}, {"text": "Hi. ", "flush": True}, {"text": ""}):
        socket.send(json.dumps(message))
    return _elevenlabs_audio(socket)


def _multi_stream_input(socket: ClientConnection) -> bytes:
    for message in (
        {"text": "Hi. ", "context_id": "a"},
        {"text": "", "context_id": "a", "flush": True},
        {"context_id": "a", "close_context": True},
    ):
        socket.send(json.dumps(message))
    return _elevenlabs_audio(socket)


def _elevenlabs_audio(socket: ClientConnection) -> bytes:
    audio = b""
    while True:
        message = json.loads(socket.recv(timeout=TIMEOUT))
        assert "error" not in message, message
        if message.get("isFinal"):
            return audio
        audio += base64.b64decode(message["audio"])


@dataclass(frozen=True)
class Socket:
    path: str
    shape: str
    exchange: Callable[[ClientConnection], bytes] = field(repr=False)

    def headers(self, key: str) -> dict[str, str]:
        return xi(key) if self.shape == "elevenlabs" else bearer(key)


SOCKETS = [
    Socket("/ws/tts", "native", _seed_tts),
    Socket("/ws/stream/audio", "native", _seed_stream_audio),
    Socket(
        "/v1/text-to-speech/default/stream-input?output_format=pcm_24000",
        "elevenlabs",
        _stream_input,
    ),
    Socket(
        "/v1/text-to-speech/default/multi-stream-input?output_format=pcm_24000",
        "elevenlabs",
        _multi_stream_input,
    ),
]


def ws_url(url: str, path: str) -> str:
    return url.replace("http://", "ws://", 1) + path


def open_socket(url: str, path: str, headers: dict[str, str] | None = None) -> ClientConnection:
    return connect(ws_url(url, path), additional_headers=headers, open_timeout=TIMEOUT)


def socket_refusal(url: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """The HTTP answer that refused a socket's handshake (as an httpx response, to check)."""
    with pytest.raises(InvalidStatus) as refused:
        open_socket(url, path, headers).close()
    answer = refused.value.response
    return httpx.Response(
        answer.status_code,
        headers=list(answer.headers.raw_items()),
        content=bytes(answer.body or b""),
    )


def mint_token(url: str, key: str) -> str:
    response = httpx.post(f"{url}/v1/auth/ws-token", headers=bearer(key), timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["parameter"] == "single_use_token" and body["expires_in"] > 0
    assert response.headers["cache-control"] == "no-store"
    token: str = body["token"]
    return token


def with_token(path: str, token: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}single_use_token={token}"


def check_socket(url: str, socket: Socket) -> None:
    for headers in (None, socket.headers(WRONG_KEY)):
        refused = socket_refusal(url, socket.path, headers)
        assert_refused(refused, 401, socket.shape)
    with open_socket(url, socket.path, socket.headers(USER_KEY)) as opened:
        assert socket.exchange(opened)
    token = mint_token(url, USER_KEY)
    with open_socket(url, with_token(socket.path, token)) as opened:
        assert socket.exchange(opened)
    spent = socket_refusal(url, with_token(socket.path, token))  # single use
    assert "ws-token" in assert_refused(spent, 401, socket.shape)["message"]


def check_token_minting(url: str) -> None:
    """Only a key in a header mints a token; a token opens sockets only."""
    no_key = httpx.post(f"{url}/v1/auth/ws-token", timeout=TIMEOUT)
    assert_refused(no_key, 401, "native")
    wrong = httpx.post(f"{url}/v1/auth/ws-token", headers=bearer(WRONG_KEY), timeout=TIMEOUT)
    assert_refused(wrong, 401, "native")
    assert httpx.get(f"{url}/v1/auth/ws-token", headers=bearer(USER_KEY)).status_code == 405
    token = mint_token(url, USER_KEY)
    as_http = httpx.post(
        f"{url}{with_token('/synthesize', token)}", data={"text": "Hi."}, timeout=TIMEOUT
    )
    assert_refused(as_http, 401, "native")
    by_token = httpx.post(
        f"{url}/v1/auth/ws-token", headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT
    )
    assert_refused(by_token, 401, "native")


# --- the per-key stream limit ------------------------------------------------------------


def check_stream_limit(url: str, solo_streams: Callable[[], int]) -> None:
    """The solo key's one stream, held by an open socket: every other stream of that key gets
    429 with Retry-After in its API's shape, other keys do not, and closing frees it."""
    with open_socket(url, "/ws/tts", bearer(SOLO_KEY)):
        assert solo_streams() == 1
        for endpoint in ENDPOINTS[:4]:
            busy = endpoint.send(url, SOLO_KEY)
            fields = assert_refused(busy, 429, endpoint.shape)
            assert int(busy.headers["retry-after"]) > 0
            assert "'solo'" in fields["message"]
            if endpoint.shape != "native":
                expected = "rate_limit_exceeded" if endpoint.shape == "openai" else None
                assert fields["code"] == (expected or "too_many_concurrent_requests")
        listing = httpx.get(f"{url}/voices", headers=bearer(SOLO_KEY), timeout=TIMEOUT)
        assert listing.status_code == 200  # not a stream
        refused = socket_refusal(url, "/ws/tts", bearer(SOLO_KEY))
        assert_refused(refused, 429, "native")
        assert ENDPOINTS[1].send(url, USER_KEY).status_code == 200  # other keys are unaffected
    wait_until(lambda: solo_streams() == 0, "the solo key's socket to be released")
    assert ENDPOINTS[1].send(url, SOLO_KEY).status_code == 200


def check_release_on_disconnect(url: str, solo_streams: Callable[[], int]) -> None:
    """A long SSE stream that the client leaves after its first event gives its slot back."""
    for _ in range(2):  # the second stream is let in only if the first was released
        with httpx.stream(
            "POST",
            f"{url}/synthesize-stream",
            data={"text": "A long one."},
            headers=bearer(SOLO_KEY),
            timeout=TIMEOUT,
        ) as response:
            assert response.status_code == 200
            lines = response.iter_lines()  # kept: a dropped iterator closes the response
            next(lines)
            assert solo_streams() == 1
        wait_until(lambda: solo_streams() == 0, "the solo key's stream to be released")


def wait_until(probe: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)
