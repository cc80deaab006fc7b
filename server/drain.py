"""Graceful drain: the first SIGTERM makes a worker finish what it runs and then exit.

While draining, /health says `draining` (so the balancer sends nothing new and stops counting
the worker's capacity), new requests get 503 with Retry-After in their API's shape (raised by
`Worker.ready_runner`), new WebSockets are refused at the handshake, and the requests already
admitted run to their end, for at most `--drain-timeout` seconds. Then uvicorn shuts down as
usual: what still runs gets `SHUTDOWN_GRACE_S`, then is cut. A second SIGTERM, or SIGINT
(Ctrl-C), skips the drain.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from edge.deadlines import DeadlineProtocol
from server.config import ServerConfig
from server.error_responses import error_response
from server.errors import Draining
from server.websocket_sender import CLOSE_TRY_AGAIN_LATER
from server.worker import Worker, WorkerStatus

logger = logging.getLogger("server")

# After the drain (or its timeout), how long uvicorn lets open responses finish before it
# cuts them: a stream that ended during the drain only has its last event left to send.
SHUTDOWN_GRACE_S = 2


class DrainGuard:
    """ASGI middleware: counts the HTTP requests being answered (a drain waits for them, since
    a stream's last event is sent after its admission ticket is released) and refuses new
    WebSockets while the worker drains."""

    def __init__(self, app: ASGIApp, worker: Worker):
        self.app = app
        self.worker = worker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.worker.status is WorkerStatus.DRAINING:
            await refuse_websocket(WebSocket(scope, receive, send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.worker.requests_in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.worker.requests_in_flight -= 1


async def refuse_websocket(websocket: WebSocket) -> None:
    """An HTTP 503 instead of the handshake, so that the balancer tries another worker; a
    server without the denial extension closes the socket as "try again later"."""
    response = error_response(websocket, Draining())
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:
        await websocket.close(CLOSE_TRY_AGAIN_LATER)


class DrainingServer(uvicorn.Server):
    """uvicorn, except that the first SIGTERM drains the worker before shutting down."""

    def __init__(self, config: uvicorn.Config, worker: Worker, drain_timeout: float):
        super().__init__(config)
        self.worker = worker
        self.drain_timeout = drain_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs in the signal handler, between two bytecodes of the loop's thread: start the
        # drain as a task on the loop, never here.
        if sig != signal.SIGTERM or self._drain is not None or self._loop is None:
            super().handle_exit(sig, frame)  # uvicorn's own: stop now
            return
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        if self._drain is None and not self.should_exit:
            self._drain = asyncio.get_running_loop().create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        await self.worker.drain(self.drain_timeout)
        self.should_exit = True


def serve(app: ASGIApp, worker: Worker, config: ServerConfig) -> None:
    """Run `app` (the one holding `worker`) until SIGINT, or SIGTERM and a drain."""
    server_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        http=DeadlineProtocol,  # slow or silent clients cannot hold connections forever
    )
    DrainingServer(server_config, worker, config.drain_timeout).run()
