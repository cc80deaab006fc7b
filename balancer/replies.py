"""Responses the balancer makes itself, sent over raw ASGI (the proxy is a raw ASGI app)."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send


async def send_reply(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    has_length = any(k.lower() == b"content-length" for k, _ in headers)
    if not has_length:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_json(
    send: Send, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    raw = [(b"content-type", b"application/json")]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send_reply(send, status, raw, json.dumps(payload).encode())


async def send_unavailable(send: Send, retry_after: int, message: str, **extra: Any) -> None:
    """503 with Retry-After and a JSON body: no worker can take the request right now."""
    await send_json(
        send, 503, {"error": message, **extra}, headers={"Retry-After": str(retry_after)}
    )
