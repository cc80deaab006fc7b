"""WebSocket proxying: each client socket pinned to one worker for its whole life, relayed as
messages come.

Every WebSocket path is proxied (the balancer has none of its own), with its query string
unchanged. A socket is routed when its handshake arrives, like an HTTP request: the policy
picks a worker and the socket holds that worker's `Lease`, so it counts in the worker's load,
until it closes, whichever way. The client's handshake waits for the worker's: a worker that
fails before completing it (refused, reset, timed out) or answers 503 is swapped for another,
at most `max_attempts` workers. Only then is the client accepted, with the subprotocol and
headers the worker chose. Any other refusal of the worker's (a 403 for a bad key, say) is
passed on as it is, and a socket no worker takes is refused with an HTTP 503 (see `refuse`).

After the handshake, messages go both ways as they arrive, text as text and binary as binary,
each direction in order, with no buffering beyond the two connections' own flow control. The
socket ends with the first side that goes:
- the worker closes: its close code and reason are passed on to the client;
- the worker is lost (no close frame: it crashed, or stopped answering pings): the client gets
  one text message, `{"type": "error", "error": "worker lost: ...", "message": "worker lost:
  ..."}` (`error` as in the balancer's other errors, the same text in `message` for
  ElevenLabs-style clients, which read that key), then close code 1011 (internal error);
- the client goes: the worker's socket is closed at once, so the worker stops generating, with
  the client's close code when it sent one (1001, going away, when it just vanished).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass

from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import EXTERNAL_CLOSE_CODES, CloseCode
from websockets.typing import Subprotocol

from balancer.attempts import Attempt, Rejection, try_workers
from balancer.contexts import Contexts, has_contexts
from balancer.counters import SocketCounters, TotalCounters
from balancer.pool import Lease, Worker, WorkerPool
from balancer.proxy import BUSY, RESPONSE_HOP_HEADERS, WORKER_HEADER
from balancer.replies import send_reply, unavailable
from balancer.request import REQUEST_HOP_HEADERS, connection_tokens, forwarded_headers, raw_target

logger = logging.getLogger("balancer")

DENIAL_EXTENSION = "websocket.http.response"  # ASGI: answer a handshake with an HTTP response
# The client's handshake headers that describe its own connection: the upstream handshake makes
# its own (key, version, extensions; subprotocols are passed as such), and Origin is a browser's
# statement about the page that opened the socket to us, which workers do not check.
SOCKET_REQUEST_DROP = REQUEST_HOP_HEADERS | frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"origin",
    }
)
# The worker's 101 says how its own connection was upgraded; ours to the client is uvicorn's.
SOCKET_RESPONSE_DROP = RESPONSE_HOP_HEADERS | frozenset(
    {
        b"sec-websocket-accept",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"content-length",
    }
)
# Keepalive pings to the worker: one that answers none for this long is lost. (websockets'
# defaults, written out because they decide how soon a client hears of a frozen worker.)
PING_INTERVAL_S = 20.0
PING_TIMEOUT_S = 20.0
# How long a worker gets to answer our close frame before its connection is dropped.
CLOSE_TIMEOUT_S = 5.0
LOST_REASON = "worker lost"  # the close reason sent with 1011


def sendable(code: int) -> bool:
    """Whether a close code may go on the wire (1005 and 1006 only describe a missing frame)."""
    return code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000


@dataclass(frozen=True)
class SocketRequest:
    """A client's WebSocket handshake as the balancer replays it to workers."""

    path: str
    target: str  # raw path and query, exactly as the client sent them
    headers: list[tuple[str, str]]
    subprotocols: list[Subprotocol]
    can_deny: bool  # the server can answer the handshake with an HTTP response

    @classmethod
    def from_scope(cls, scope: Scope) -> SocketRequest:
        headers = forwarded_headers(scope, SOCKET_REQUEST_DROP)
        return cls(
            path=scope["path"],
            target=raw_target(scope).decode("latin-1"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
            subprotocols=[Subprotocol(p) for p in scope.get("subprotocols", ())],
            can_deny=DENIAL_EXTENSION in (scope.get("extensions") or {}),
        )


@dataclass(frozen=True)
class ClientClosed:
    """The client went away, with the close code it sent (1005 or 1006 when it sent none)."""

    code: int
    reason: str = ""

    def upstream(self) -> tuple[int, str]:
        """The close code and reason for the worker's socket."""
        if sendable(self.code):
            return self.code, self.reason
        return CloseCode.GOING_AWAY, ""


Ending = ClientClosed | ConnectionClosed  # how a relayed socket ended: the client or the worker


class SocketProxy:
    def __init__(
        self,
        pool: WorkerPool,
        totals: TotalCounters,
        *,
        max_attempts: int,
        retry_after: int,
        handshake_timeout: float,
        max_message_bytes: int,
    ):
        self.pool = pool
        self.totals = totals
        self.max_attempts = max_attempts
        self.retry_after = retry_after
        self.handshake_timeout = handshake_timeout
        self.max_message_bytes = max_message_bytes
        # http://host -> ws://host, https://host -> wss://host
        self._bases = {w.url: "ws" + w.url.removeprefix("http") for w in pool}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "websocket"
        if (await receive())["type"] != "websocket.connect":
            return  # the client went before its handshake was looked at
        request = SocketRequest.from_scope(scope)

        def failover(left: Worker, to: Worker) -> None:
            left.counters.sockets.failovers += 1
            self.totals.sockets.failovers += 1
            logger.info("WebSocket %s: failover to %s", request.path, to)

        attempts = await try_workers(
            self.pool,
            self.max_attempts,
            lambda lease: self._attempt(lease, request, receive, send),
            failover,
        )
        if attempts.relayed:
            return
        self.totals.sockets.refused += 1
        rejection = attempts.rejection
        if rejection is not None:
            # Every worker we could try is busy or loading: their own 503 says when to retry.
            await refuse(request, send, rejection.status, rejection.headers, rejection.body)
            return
        ready = {"ready": len(self.pool.available()), "total": len(self.pool)}
        message = attempts.refusal_message("accepting")
        headers, body = unavailable(self.retry_after, message, workers=ready)
        await refuse(request, send, 503, headers, body)

    async def _attempt(
        self, lease: Lease, request: SocketRequest, receive: Receive, send: Send
    ) -> Attempt | Rejection:
        worker = lease.worker
        try:
            upstream = await self._connect(worker, request)
        except InvalidStatus as exc:  # the worker answered the upgrade with something else
            return await self._refused_by(worker, request, exc, send)
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            self._worker_failed(worker, exc)
            return Attempt.FAILED
        try:
            await self._serve(lease, request, upstream, receive, send)
        finally:
            await upstream.close(CloseCode.GOING_AWAY)  # already closed, unless something broke
        return Attempt.RELAYED

    def _base(self, worker: Worker) -> str:
        base = self._bases.get(worker.url)
        if base is None:  # a worker that joined since: those that left are forgotten too
            self._bases = {w.url: "ws" + w.url.removeprefix("http") for w in self.pool}
            base = self._bases.get(worker.url) or "ws" + worker.url.removeprefix("http")
        return base

    async def _connect(self, worker: Worker, request: SocketRequest) -> ClientConnection:
        return await connect(
            self._base(worker) + request.target,
            subprotocols=request.subprotocols or None,
            additional_headers=request.headers,
            user_agent_header=None,  # the client's own User-Agent is among its headers
            # Compressing audio costs CPU and saves little, and the worker is on our network.
            compression=None,
            # An HTTP_PROXY meant for the outside world must not capture worker traffic.
            proxy=None,
            open_timeout=self.handshake_timeout,
            ping_interval=PING_INTERVAL_S,
            ping_timeout=PING_TIMEOUT_S,
            close_timeout=CLOSE_TIMEOUT_S,
            max_size=self.max_message_bytes,
        )

    async def _refused_by(
        self, worker: Worker, request: SocketRequest, exc: InvalidStatus, send: Send
    ) -> Attempt | Rejection:
        response = exc.response
        worker.counters.sockets.refused += 1
        headers = response_headers(response.headers, worker)
        if response.status_code == BUSY:
            return Rejection(response.status_code, headers, bytes(response.body))
        if response.status_code >= 500:
            worker.counters.errors += 1
            worker.last_error = str(exc)
        # A refusal that another worker would repeat (a bad key, an unknown path): the client's.
        self.totals.sockets.refused += 1
        await refuse(request, send, response.status_code, headers, bytes(response.body))
        return Attempt.RELAYED

    async def _serve(
        self,
        lease: Lease,
        request: SocketRequest,
        upstream: ClientConnection,
        receive: Receive,
        send: Send,
    ) -> None:
        worker = lease.worker
        worker.breaker.record_success()
        counters = (worker.counters.sockets, self.totals.sockets)
        for c in counters:
            c.opened += 1
            c.open += 1
        contexts = Contexts(counters) if has_contexts(request.path) else None
        assert upstream.response is not None  # the handshake completed
        try:
            accept = {
                "type": "websocket.accept",
                "subprotocol": upstream.subprotocol,
                "headers": response_headers(upstream.response.headers, worker),
            }
            ending: Ending
            try:
                await send(accept)
            except OSError:  # uvicorn's ClientDisconnected: gone while the worker accepted
                ending = ClientClosed(CloseCode.ABNORMAL_CLOSURE)
            else:
                ending = await relay(receive, send, upstream, contexts)
            await self._end(worker, request, upstream, ending, send, counters)
        finally:
            for c in counters:
                c.open -= 1
            if contexts is not None:
                contexts.close_all()

    async def _end(
        self,
        worker: Worker,
        request: SocketRequest,
        upstream: ClientConnection,
        ending: Ending,
        send: Send,
        counters: tuple[SocketCounters, ...],
    ) -> None:
        if isinstance(ending, ClientClosed):
            await upstream.close(*ending.upstream())
            for c in counters:
                c.client_closed += 1
            return
        close = worker_close(ending)
        if close is not None:
            await close_client(send, *close)
            for c in counters:
                c.worker_closed += 1
            return
        # No close frame from the worker: it is gone.
        self._worker_failed(worker, ending)
        for c in counters:
            c.lost += 1
        logger.warning(
            "WebSocket %s: lost %s mid-socket: %s", request.path, worker.url, worker.last_error
        )
        await send_worker_lost(send, worker.url, worker.last_error or "failed")

    def _worker_failed(self, worker: Worker, exc: Exception) -> None:
        worker.counters.errors += 1
        worker.last_error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        now = self.pool.clock()
        if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
            worker.breaker.trip(now)  # nothing is listening there: passive health marking
        else:
            worker.breaker.record_failure(now)


async def relay(
    receive: Receive, send: Send, upstream: ClientConnection, contexts: Contexts | None
) -> Ending:
    """Relay messages both ways until one side goes, and say which and how."""
    to_worker = asyncio.create_task(client_to_worker(receive, upstream, contexts))
    to_client = asyncio.create_task(worker_to_client(upstream, send, contexts))
    try:
        done, _ = await asyncio.wait((to_worker, to_client), return_when=asyncio.FIRST_COMPLETED)
        if to_worker in done:
            client_closed = to_worker.result()
            if client_closed is not None:
                return client_closed
            # Writing to the worker failed: its side delivers what it still has, then says how
            # the worker closed.
        return await to_client
    finally:
        for task in (to_worker, to_client):
            task.cancel()
        await asyncio.gather(to_worker, to_client, return_exceptions=True)


async def client_to_worker(
    receive: Receive, upstream: ClientConnection, contexts: Contexts | None
) -> ClientClosed | None:
    """The client's messages to the worker, until the client goes (None: the worker went)."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            code = message.get("code", CloseCode.NO_STATUS_RCVD)
            return ClientClosed(code, message.get("reason") or "")
        if message["type"] != "websocket.receive":
            continue
        text = message.get("text")
        try:
            if text is not None:
                if contexts is not None:
                    contexts.from_client(text)
                await upstream.send(text)
            else:
                await upstream.send(message.get("bytes") or b"")
        except ConnectionClosed:
            return None


async def worker_to_client(
    upstream: ClientConnection, send: Send, contexts: Contexts | None
) -> Ending:
    """The worker's messages to the client, until either goes."""
    try:
        while True:
            data = await upstream.recv()
            if isinstance(data, str):
                if contexts is not None:
                    contexts.from_worker(data)
                await send({"type": "websocket.send", "text": data})
            else:
                await send({"type": "websocket.send", "bytes": data})
    except ConnectionClosed as closed:
        return closed
    except OSError:  # uvicorn's ClientDisconnected: the client went while we wrote to it
        return ClientClosed(CloseCode.ABNORMAL_CLOSURE)


def worker_close(closed: ConnectionClosed) -> tuple[int, str] | None:
    """The close code and reason for the client when the worker's socket closed, None when the
    worker was lost (no close frame from it, or no answer to our pings)."""
    if closed.rcvd is not None and closed.rcvd_then_sent is not False:
        # The worker closed: its code and reason are the client's (1005, an empty close
        # frame, cannot be sent on).
        code = closed.rcvd.code
        return (code if sendable(code) else CloseCode.NORMAL_CLOSURE), closed.rcvd.reason
    if closed.sent is not None and closed.sent.code != CloseCode.INTERNAL_ERROR:
        # Our end closed it first, refusing what the worker sent: a message over the size
        # limit (1009) or a protocol error (1002, 1007). The client hears the same.
        return closed.sent.code, closed.sent.reason
    return None


def response_headers(headers: Headers, worker: Worker) -> list[tuple[bytes, bytes]]:
    """A worker's handshake answer headers for the client, and which worker it was."""
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.raw_items()]
    drop = SOCKET_RESPONSE_DROP | connection_tokens(raw)
    kept = [(k, v) for k, v in raw if k not in drop]
    kept.append((WORKER_HEADER, worker.url.encode()))
    return kept


async def refuse(
    request: SocketRequest, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    """Refuse a client's handshake with an HTTP response (a 503 when no worker took it).

    An HTTP 503 rather than a socket accepted and closed with 1013 (try again later): a stock
    client then fails in its connect call, where it handles handshake errors, instead of on a
    later read or write of a socket it believed open. websockets raises `InvalidStatus` with
    the status, Retry-After and JSON body, and its reconnecting `connect` retries 5xx answers by
    itself; browsers see either as a failed socket (close 1006, the status hidden from scripts).
    A server without ASGI's denial responses refuses with its own status (uvicorn: 403).
    """
    with contextlib.suppress(OSError):  # the client may have gone while workers were tried
        if request.can_deny:
            await send_reply(send, status, headers, body, websocket=True)
        else:
            await send({"type": "websocket.close", "code": CloseCode.TRY_AGAIN_LATER})


async def close_client(send: Send, code: int, reason: str) -> None:
    with contextlib.suppress(OSError):  # gone already: nothing to tell
        await send({"type": "websocket.close", "code": code, "reason": reason})


async def send_worker_lost(send: Send, worker: str, reason: str) -> None:
    """The error message and close 1011 that end a socket whose worker went away."""
    message = f"worker lost: {worker} went away mid-socket ({reason}); open a new socket"
    payload = json.dumps({"type": "error", "error": message, "message": message})
    with contextlib.suppress(OSError):
        await send({"type": "websocket.send", "text": payload})
        await send(
            {"type": "websocket.close", "code": CloseCode.INTERNAL_ERROR, "reason": LOST_REASON}
        )
