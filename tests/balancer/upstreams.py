"""Tiny in-thread upstream apps with scripted behaviour, for byte-level proxy tests.

Each answers `/health` like a worker, so the balancer puts it in rotation.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send


def with_health(*routes: Route, capacity: int = 4) -> Starlette:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ready", "capacity": capacity})

    return Starlette(routes=[Route("/health", health), *routes])


def endless(capacity: int) -> Starlette:
    """A worker of the given capacity whose streams send an event every 50 ms until the client
    hangs up."""

    async def body() -> AsyncIterator[bytes]:
        chunk_id = 0
        while True:
            chunk_id += 1
            yield f'event: audio_chunk\r\ndata: {{"chunk_id": {chunk_id}}}\r\n\r\n'.encode()
            await asyncio.sleep(0.05)

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(body(), media_type="text/event-stream")

    route = Route("/synthesize-stream", endpoint, methods=["POST"])
    return with_health(route, capacity=capacity)


def scripted_stream(pieces: Sequence[bytes], media_type: str = "text/event-stream") -> Starlette:
    """Sends `pieces` as separate writes, exactly as given."""

    async def body() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece
            await asyncio.sleep(0.002)  # let each piece leave as its own write

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(body(), media_type=media_type)

    return with_health(Route("/synthesize-stream", endpoint, methods=["POST"]))


def stalling_stream(first: bytes, stop: threading.Event) -> Starlette:
    """Sends `first`, then nothing, keeping the connection open (a frozen worker) until `stop`."""

    async def body() -> AsyncIterator[bytes]:
        yield first
        while not stop.is_set():
            await asyncio.sleep(0.02)

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(body(), media_type="text/event-stream")

    return with_health(Route("/synthesize-stream", endpoint, methods=["POST"]))


def gated_stream(first: bytes, rest: bytes, gate: threading.Event) -> Starlette:
    """Sends `first`, then waits for the test to open `gate` before sending `rest`."""

    async def body() -> AsyncIterator[bytes]:
        yield first
        while not gate.is_set():
            await asyncio.sleep(0.01)
        yield rest

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(body(), media_type="text/event-stream")

    return with_health(Route("/synthesize-stream", endpoint, methods=["POST"]))


def echo() -> Starlette:
    """Describes the request it got: method, raw target, headers, body digest."""

    async def endpoint(request: Request) -> Response:
        body = await request.body()
        target = request.scope["raw_path"].decode()
        if request.scope["query_string"]:
            target += "?" + request.scope["query_string"].decode()
        return JSONResponse(
            {
                "method": request.method,
                "target": target,
                "headers": [[k.decode(), v.decode()] for k, v in request.scope["headers"]],
                "length": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
            }
        )

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return with_health(Route("/{path:path}", endpoint, methods=methods))


def cut_off(
    after: bytes, path: str = "/synthesize-stream", media_type: bytes = b"text/event-stream"
) -> Starlette:
    """Sends response headers and `after`, then drops the connection (a crash mid-response)."""

    class CutOff:  # a raw ASGI endpoint: Starlette would wrap a plain function
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", media_type)],
                }
            )
            if after:
                await send({"type": "http.response.body", "body": after, "more_body": True})
            raise ConnectionAbortedError("simulated crash")  # uvicorn closes the connection

    return with_health(Route(path, CutOff(), methods=["POST"]))


def answering(status: int, body: bytes = b"{}", path: str = "/voices") -> Starlette:
    async def endpoint(request: Request) -> Response:
        await request.body()
        return Response(body, status_code=status, media_type="application/json")

    return with_health(Route(path, endpoint, methods=["POST", "DELETE"]))


@dataclass(frozen=True)
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


def recording(received: list[Received]) -> Starlette:
    """Answers every request 200 and appends what it got to `received` (health checks aside):
    for tests of what reaches a worker at all."""

    async def endpoint(request: Request) -> Response:
        body = await request.body()
        target = request.scope["raw_path"].decode()
        headers = {k.decode(): v.decode() for k, v in request.scope["headers"]}
        received.append(Received(request.method, target, headers, body))
        return JSONResponse({"received": len(body)})

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return with_health(Route("/{path:path}", endpoint, methods=methods))
