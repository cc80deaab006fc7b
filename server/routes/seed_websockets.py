"""The seeds' WebSocket protocols: `/ws/tts` and `/ws/stream/audio`.

One connection carries many requests, one after another. A request is one JSON text message:
`{"text", "tokens_per_chunk", ...}` on `/ws/tts`, `{"type": "stream_request", "data": {"input",
"voice", "chunk_size", ...}}` on `/ws/stream/audio`; every parameter of `/synthesize-stream`
is accepted (a voice by id or name, not an uploaded prompt; `language`, each request its own).
The server answers each audio
chunk with a binary frame (PCM s16le, 24 kHz, mono) followed by a JSON message with the
chunk's metrics (`{"type": "audio_chunk", ...}`, as the SSE event without the audio), and ends
the request with `{"type": "complete", "stats": {...}}`. `{"type": "cancel"}` stops the running
request (answered by `{"type": "cancelled"}`).

Errors are `{"type": "error", "error", "field"?, "allowed"?, "retry_after"?}`. A request's
own problem (a bad field, a language the model does not speak, an unknown voice, a busy
worker) leaves the connection open for the next request; a frame that is not a JSON object
closes it (1003 for binary, 1007 for invalid JSON), and so does a worker that is not ready
(1013, try again later).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from contextlib import aclosing, suppress
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from server.audio import pcm16
from server.engine.schema import AudioChunk
from server.error_responses import native_body
from server.errors import FieldError, NotReady, ServiceError
from server.events import audio_chunk_metadata, done_event
from server.forms import parse_speech_fields
from server.synthesis import Synthesis, admit, spoken_languages
from server.websocket_sender import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNSUPPORTED_DATA,
    SocketSender,
)
from server.worker import Worker

logger = logging.getLogger("server")

# What each protocol calls the fields of `/synthesize-stream`.
TTS_ALIASES = {"tokens_per_chunk": "chunk_size"}
STREAM_AUDIO_ALIASES = {"input": "text"}

RequestReader = Callable[[dict[str, Any]], dict[str, Any] | None]


def tts_request(message: dict[str, Any]) -> dict[str, Any] | None:
    """`/ws/tts`: the message is the request."""
    return _renamed(message, TTS_ALIASES)


def stream_audio_request(message: dict[str, Any]) -> dict[str, Any] | None:
    """`/ws/stream/audio`: `{"type": "stream_request", "data": {...}}`; None: not a request."""
    if message.get("type") != "stream_request":
        return None
    data = message.get("data")
    if not isinstance(data, dict):
        raise FieldError("data", "stream_request needs a data object")
    return _renamed(data, STREAM_AUDIO_ALIASES)


def _renamed(values: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    return {aliases.get(name, name): value for name, value in values.items()}


async def tts(websocket: WebSocket) -> None:
    await SeedSocket(websocket, "ws/tts", tts_request).serve()


async def stream_audio(websocket: WebSocket) -> None:
    await SeedSocket(websocket, "ws/stream/audio", stream_audio_request).serve()


class SeedSocket:
    """One client connection: reads requests, runs one at a time, relays its audio."""

    def __init__(self, websocket: WebSocket, endpoint: str, read_request: RequestReader):
        self.websocket = websocket
        self.endpoint = endpoint
        self.worker: Worker = websocket.app.state.worker
        self._read_request = read_request
        self._running: asyncio.Task[None] | None = None
        self._sender = SocketSender(websocket)  # the reader and the running request both send

    async def serve(self) -> None:
        await self.websocket.accept()
        try:
            await self._read_messages()
        except WebSocketDisconnect:
            pass
        finally:
            await self._stop_running()

    async def _read_messages(self) -> None:
        while True:
            frame = await self.websocket.receive()
            if frame["type"] == "websocket.disconnect":
                return
            if frame.get("text") is None:
                await self._close(
                    "send JSON text messages, not binary frames", CLOSE_UNSUPPORTED_DATA
                )
                return
            try:
                message = json.loads(frame["text"])
            except ValueError:
                message = None
            if not isinstance(message, dict):
                await self._close("each message must be a JSON object", CLOSE_INVALID_PAYLOAD)
                return
            if message.get("type") == "cancel":
                await self._cancel()
                continue
            try:
                await self._start(message)
            except NotReady as exc:
                await self._close(str(exc), CLOSE_TRY_AGAIN_LATER)
                return
            except ServiceError as exc:
                await self._send_error(exc)

    async def _start(self, message: dict[str, Any]) -> None:
        if self._running is not None and not self._running.done():
            raise FieldError("type", "a request is running: wait for it, or cancel it first")
        values = self._read_request(message)
        if values is None:
            raise FieldError(
                "type", f"unknown message type {message.get('type')!r}", "stream_request, cancel"
            )
        config = self.worker.config
        fields = parse_speech_fields(
            values,
            variant=config.model,
            max_text_chars=config.max_text_chars,
            languages=spoken_languages(self.worker),
        )
        synthesis = await admit(self.worker, self.endpoint, fields)
        self._running = asyncio.create_task(self._relay(synthesis))

    async def _relay(self, synthesis: Synthesis) -> None:
        last: AudioChunk | None = None
        try:
            async with aclosing(synthesis.chunks()) as chunks:
                async for chunk in chunks:
                    last = chunk
                    await self._send(pcm16(chunk.audio))
                    await self._send({"type": "audio_chunk", **audio_chunk_metadata(chunk)})
        except ServiceError as exc:
            await self._send_error(exc)
            return
        assert last is not None
        done = done_event(last)
        stats = {"total_chunks": done["total_chunks"], **done["metrics"]}
        await self._send({"type": "complete", "stats": stats})

    async def _cancel(self) -> None:
        if self._running is None or self._running.done():
            await self._send_error(FieldError("type", "no request is running"))
            return
        await self._stop_running()
        await self._send({"type": "cancelled"})

    async def _stop_running(self) -> None:
        if self._running is not None and not self._running.done():
            self._running.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self._running
        self._running = None

    async def _send(self, payload: bytes | dict[str, Any]) -> None:
        if isinstance(payload, bytes):
            await self._sender.binary(payload)
        else:
            await self._sender.json(payload)

    async def _send_error(self, exc: ServiceError) -> None:
        retry = {"retry_after": exc.retry_after} if exc.retry_after is not None else {}
        await self._send({"type": "error", **native_body(exc), **retry})

    async def _close(self, message: str, code: int) -> None:
        await self._send({"type": "error", "error": message})
        await self._sender.close(code, message)
