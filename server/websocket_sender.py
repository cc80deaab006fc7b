"""Sending on a server WebSocket from several tasks: one message at a time, and quietly
nothing once the client has gone (its absence is noticed by the reading side)."""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

# RFC 6455 close codes.
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013
MAX_REASON_BYTES = 123  # a close frame's reason must fit in 125 bytes with the code


class SocketSender:
    def __init__(self, websocket: WebSocket):
        self.websocket = websocket
        self._lock = asyncio.Lock()
        self.closed = False

    async def json(self, payload: dict[str, Any]) -> None:
        await self._send(json.dumps(payload))

    async def binary(self, payload: bytes) -> None:
        await self._send(payload)

    async def close(self, code: int, reason: str = "") -> None:
        async with self._lock:
            if self.closed:
                return
            self.closed = True
            with suppress(WebSocketDisconnect, RuntimeError):
                await self.websocket.close(code, _reason(reason))

    async def _send(self, payload: str | bytes) -> None:
        async with self._lock:
            if self.closed:
                return
            with suppress(WebSocketDisconnect, RuntimeError):  # the client left meanwhile
                if isinstance(payload, bytes):
                    await self.websocket.send_bytes(payload)
                else:
                    await self.websocket.send_text(payload)


def _reason(text: str) -> str:
    encoded = text.encode()[:MAX_REASON_BYTES]
    return encoded.decode(errors="ignore")
