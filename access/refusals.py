"""How a request without the right key is turned away: 401 (no key, or one we do not know),
403 (the key's role may not do that) or 429 (the key's streams are all in use, with
Retry-After), as JSON in the shape of the API that was called, the same from the worker and
the balancer: OpenAI's `{"error": {message, type, param, code}}` under `/v1/audio/`,
ElevenLabs' `{"detail": {status, message}}` under `/v1/text-to-speech/` (sockets included),
ours `{"error": message}` everywhere else.

A WebSocket is refused before its handshake completes, with the same HTTP response (ASGI's
WebSocket denial response), so clients fail in their connect call, where they handle
handshake errors. A server without that extension can only close the handshake (1008).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from access.keys import ApiKey, Role

OPENAI_PREFIX = "/v1/audio/"
ELEVENLABS_PREFIX = "/v1/text-to-speech/"
DENIAL_EXTENSION = "websocket.http.response"
CLOSE_POLICY_VIOLATION = 1008


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    openai: tuple[str, str]  # OpenAI's error type and code
    elevenlabs: str  # ElevenLabs' detail status
    retry_after: int | None = None

    def body(self, path: str) -> dict[str, Any]:
        if path.startswith(OPENAI_PREFIX):
            kind, code = self.openai
            return {"error": {"message": self.message, "type": kind, "param": None, "code": code}}
        if path.startswith(ELEVENLABS_PREFIX):
            return {"detail": {"status": self.elevenlabs, "message": self.message}}
        return {"error": self.message}

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        if self.status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="chatterbox"'))
        if self.retry_after is not None:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        return headers


def missing_key() -> Refusal:
    return Refusal(
        401,
        "an API key is required: send it as 'Authorization: Bearer <key>' or 'xi-api-key: <key>'",
        ("invalid_request_error", "missing_api_key"),
        "needs_authorization",
    )


def unknown_key() -> Refusal:
    return Refusal(
        401,
        "invalid API key",
        ("invalid_request_error", "invalid_api_key"),
        "invalid_api_key",
    )


def spent_token() -> Refusal:
    return Refusal(
        401,
        "invalid WebSocket token: tokens work once and expire within a minute; "
        "get a new one from POST /v1/auth/ws-token",
        ("invalid_request_error", "invalid_api_key"),
        "invalid_api_key",
    )


def forbidden(key: ApiKey, needed: Role) -> Refusal:
    return Refusal(
        403,
        f"the key {key.name!r} ({key.role.value}) may not do this: it needs an {needed.value} key",
        ("invalid_request_error", "insufficient_permissions"),
        "missing_permissions",
    )


def over_limit(key: ApiKey, limit: int, retry_after: int) -> Refusal:
    return Refusal(
        429,
        f"the key {key.name!r} already has {limit} stream(s) running, its limit; retry when "
        "one ends",
        ("requests", "rate_limit_exceeded"),
        "too_many_concurrent_requests",
        retry_after,
    )


async def send_refusal(scope: Scope, receive: Receive, send: Send, refusal: Refusal) -> None:
    body = json.dumps(refusal.body(scope["path"])).encode()
    headers = [*refusal.headers(), (b"content-length", str(len(body)).encode())]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if (await receive())["type"] != "websocket.connect":
        return  # gone before its handshake was looked at
    if DENIAL_EXTENSION in (scope.get("extensions") or {}):
        start = {"type": "websocket.http.response.start", "status": refusal.status}
        await send({**start, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION})


async def send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    """A plain JSON answer of the gate's own (the minted token)."""
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def too_many_tokens(retry_after: int) -> Refusal:
    return Refusal(
        429,
        "too many WebSocket tokens are waiting to be used; retry shortly",
        ("requests", "rate_limit_exceeded"),
        "too_many_concurrent_requests",
        retry_after,
    )
