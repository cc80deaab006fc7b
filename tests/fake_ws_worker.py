"""A fake worker with WebSocket routes, for the balancer's WebSocket tests.

It runs in a thread (`FakeSocketWorker(...).app` under tests.live_server) or as a process,
`python -m tests.fake_ws_worker --port N [--refuse STATUS] [--stall]`, for tests that kill it
mid-socket with os._exit, as a crash would. Either way it records every socket it was asked
for: what reached it (path and query, headers, subprotocols) and how the socket ended. A test
reads `worker.sockets` in-thread, or `GET /sockets` from a process.

Every WebSocket path is served alike: the worker accepts (with the first subprotocol offered)
and answers each client message:
- binary: echoed back as binary;
- text, a JSON object:
    {"echo": X}                  -> {"type": "echo", "echo": X}
    {"stream": N, "size": B, "delay": S, "die_after": K}
                                 -> N binary frames of B bytes (frame i is byte i % 256),
                                    S seconds apart, then {"type": "done", "frames": N};
                                    with "die_after", the process exits after K frames
    {"send": X}                  -> X as a JSON text message
    {"close": CODE, "reason": R} -> the worker closes the socket with that code
    anything else                -> {"type": "ack", "received": <the message>}

A stream runs beside the reading loop, so a client that goes mid-stream is noticed at once, as
a real worker notices it: its close code and the frames sent so far are recorded, and the
stream stops. `refuse=503` answers every upgrade with that status; `stall` never answers one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

WS_PATHS = (
    "/ws/tts",
    "/ws/stream/audio",
    "/v1/text-to-speech/{voice_id}/stream-input",
    "/v1/text-to-speech/{voice_id}/multi-stream-input",
)
SEND_ERRORS = (WebSocketDisconnect, RuntimeError, OSError)  # the client is gone


@dataclass
class SocketRecord:
    target: str  # raw path and query, as received
    headers: list[tuple[str, str]]
    subprotocols: list[str]
    opened_at: float = field(default_factory=time.time)
    accepted: bool = False
    frames_sent: int = 0
    closed_by: str | None = None  # "client" or "worker"
    close_code: int | None = None
    close_reason: str | None = None
    closed_at: float | None = None

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


class FakeSocketWorker:
    def __init__(
        self,
        *,
        refuse: int | None = None,
        stall: bool = False,
        capacity: int = 4,
        may_die: bool = False,
    ):
        self.refuse = refuse
        self.stall = stall
        self.capacity = capacity
        self.may_die = may_die  # only a worker in its own process may exit
        self.sockets: list[SocketRecord] = []
        self.health_checks = 0
        routes: list[Route | WebSocketRoute] = [
            Route("/health", self.health),
            Route("/sockets", self.records),
        ]
        routes += [WebSocketRoute(path, self.serve) for path in WS_PATHS]
        self.app = Starlette(routes=routes)

    async def health(self, request: Request) -> Response:
        self.health_checks += 1
        return JSONResponse({"status": "ready", "capacity": self.capacity})

    async def records(self, request: Request) -> Response:
        return JSONResponse([asdict(r) for r in self.sockets])

    async def serve(self, websocket: WebSocket) -> None:
        scope = websocket.scope
        target = scope["raw_path"].decode()
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode()
        record = SocketRecord(
            target=target,
            headers=[(k.decode(), v.decode()) for k, v in scope["headers"]],
            subprotocols=list(scope["subprotocols"]),
        )
        self.sockets.append(record)
        if self.refuse is not None:
            body = {"error": "busy: every stream slot is taken"}
            reply = JSONResponse(body, status_code=self.refuse, headers={"Retry-After": "3"})
            await websocket.send_denial_response(reply)
            return
        if self.stall:
            # Never answer; return once the balancer gives up and hangs up.
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
            with contextlib.suppress(*SEND_ERRORS):
                await websocket.close()
            return
        subprotocols = record.subprotocols
        await websocket.accept(subprotocol=subprotocols[0] if subprotocols else None)
        record.accepted = True
        streams: list[asyncio.Task[None]] = []
        try:
            await self.converse(websocket, record, streams)
        finally:
            for task in streams:
                task.cancel()

    async def converse(
        self, websocket: WebSocket, record: SocketRecord, streams: list[asyncio.Task[None]]
    ) -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                self.closed(record, "client", message.get("code"), message.get("reason"))
                return
            if message.get("bytes") is not None:
                await websocket.send_bytes(message["bytes"])
                continue
            command = json.loads(message["text"])
            if "echo" in command:
                await websocket.send_json({"type": "echo", "echo": command["echo"]})
            elif "stream" in command:
                streams.append(asyncio.create_task(self.stream(websocket, record, command)))
            elif "send" in command:
                await websocket.send_json(command["send"])
            elif "close" in command:
                self.closed(record, "worker", command["close"], command.get("reason", ""))
                await websocket.close(command["close"], command.get("reason", ""))
                return
            else:
                await websocket.send_json({"type": "ack", "received": command})

    async def stream(self, websocket: WebSocket, record: SocketRecord, command: Any) -> None:
        frames, size = int(command["stream"]), int(command.get("size", 64))
        delay, die_after = float(command.get("delay", 0)), command.get("die_after")
        try:
            for i in range(frames):
                if die_after is not None and record.frames_sent >= die_after:
                    if not self.may_die:
                        raise RuntimeError("die_after needs a worker in its own process")
                    os._exit(1)  # a crash: no close frame, the connection just drops
                await websocket.send_bytes(bytes([i % 256]) * size)
                record.frames_sent += 1
                await asyncio.sleep(delay)
            await websocket.send_json({"type": "done", "frames": frames})
        except SEND_ERRORS:
            return

    @staticmethod
    def closed(record: SocketRecord, by: str, code: int | None, reason: str | None) -> None:
        if record.closed_by is None:
            record.closed_by, record.close_code, record.close_reason = by, code, reason
            record.closed_at = time.time()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--refuse", type=int, help="answer every upgrade with this status")
    parser.add_argument("--stall", action="store_true", help="never answer an upgrade")
    parser.add_argument("--capacity", type=int, default=4)
    args = parser.parse_args(argv)
    worker = FakeSocketWorker(
        refuse=args.refuse, stall=args.stall, capacity=args.capacity, may_die=True
    )
    uvicorn.run(worker.app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
