"""Responses the balancer makes itself, sent over raw ASGI (the proxy is a raw ASGI app).

A refused WebSocket handshake is answered the same way, through ASGI's WebSocket denial
response extension (`websocket=True`): a plain HTTP response instead of the 101.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send

RawHeaders = list[tuple[bytes, bytes]]


async def send_reply(
    send: Send, status: int, headers: RawHeaders, body: bytes, *, websocket: bool = False
) -> None:
    has_length = any(k.lower() == b"content-length" for k, _ in headers)
    if not has_length:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    prefix = "websocket.http.response" if websocket else "http.response"
    await send({"type": f"{prefix}.start", "status": status, "headers": headers})
    await send({"type": f"{prefix}.body", "body": body, "more_body": False})


def json_reply(
    payload: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[RawHeaders, bytes]:
    raw = [(b"content-type", b"application/json")]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return raw, json.dumps(payload).encode()


def unavailable(retry_after: int, message: str, **extra: Any) -> tuple[RawHeaders, bytes]:
    """The headers and body of `send_unavailable`'s 503."""
    return json_reply({"error": message, **extra}, {"Retry-After": str(retry_after)})


async def send_json(
    send: Send, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    await send_reply(send, status, *json_reply(payload, headers))


async def send_unavailable(send: Send, retry_after: int, message: str, **extra: Any) -> None:
    """503 with Retry-After and a JSON body: no worker can take the request right now."""
    await send_reply(send, 503, *unavailable(retry_after, message, **extra))
