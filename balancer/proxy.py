"""The reverse proxy: every request pinned to one worker for its whole life, relayed unbuffered.

A request is routed when it arrives (after its body is read, so it can be replayed) and holds
its worker's lease until its response ends, whichever way it ends. Until the client has some
of a worker's content (its first byte; for an event stream, its first event, keep-alives aside:
see balancer/downstream.py), a worker that fails, or answers 503 because it is full or still
loading, is swapped for another (at most `max_attempts` workers). After that, a lost worker
ends an event stream with an `error` event, and any other response by closing the connection,
so a client is never left waiting on a dead stream. A client that goes away cancels the
upstream request, which makes the worker stop generating.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
from starlette.types import Receive, Scope, Send

from balancer.attempts import Attempt, Rejection, try_workers
from balancer.counters import TotalCounters
from balancer.downstream import Downstream, moved_to
from balancer.pool import Lease, Worker, WorkerPool
from balancer.replies import send_json, send_reply, send_unavailable
from balancer.request import (
    BodyTooLarge,
    ClientGone,
    UpstreamRequest,
    connection_tokens,
    declared_length,
    read_body,
)
from balancer.sse import EventAligner, is_event_stream, worker_lost_event
from balancer.upstream import UpstreamClients

logger = logging.getLogger("balancer")

RESPONSE_HOP_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        # uvicorn adds its own
        b"date",
        b"server",
    }
)
WORKER_HEADER = b"x-upstream-worker"  # which worker served the request (debugging, tests)
BUSY = 503  # a worker's "full or still loading": worth trying another
OK = 200

Handler = Callable[[UpstreamRequest, Send], Awaitable[None]]


class Proxy:
    def __init__(
        self,
        pool: WorkerPool,
        clients: UpstreamClients,
        totals: TotalCounters,
        *,
        max_attempts: int,
        max_body_bytes: int,
        retry_after: int,
        stream_idle_timeout: float | None = None,
        broadcast: tuple[Callable[[str, str], bool], Handler] | None = None,
    ):
        self.pool = pool
        self.clients = clients
        self.totals = totals
        self.max_attempts = max_attempts
        self.max_body_bytes = max_body_bytes
        self.retry_after = retry_after
        self.stream_idle_timeout = stream_idle_timeout
        self.broadcast = broadcast
        self._bases = {w.url: httpx.URL(w.url) for w in pool}  # parsed once, not per request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.totals.requests += 1
        declared = declared_length(scope)
        try:
            if declared is not None and declared > self.max_body_bytes:
                raise BodyTooLarge()
            body = await read_body(receive, self.max_body_bytes)
        except BodyTooLarge:
            self.totals.too_large += 1
            limit = self.max_body_bytes
            await send_json(send, 413, {"error": f"the request body is over {limit} bytes"})
            return
        except ClientGone:
            self.totals.client_disconnects += 1
            return
        request = UpstreamRequest.from_scope(scope, body)
        handler: Handler = self.relay
        if self.broadcast is not None and self.broadcast[0](request.method, request.path):
            handler = self.broadcast[1]
        if await until_disconnect(receive, handler(request, send)):
            self.totals.client_disconnects += 1

    async def relay(self, request: UpstreamRequest, send: Send) -> None:
        def failover(left: Worker, to: Worker) -> None:
            left.counters.failovers += 1
            self.totals.failovers += 1
            logger.info("%s %s: failover to %s", request.method, request.path, to)

        downstream = Downstream(send)
        attempts = await try_workers(
            self.pool,
            self.max_attempts,
            lambda lease: self._attempt(lease, request, downstream),
            failover,
        )
        if attempts.relayed:
            return
        rejection = attempts.rejection
        if rejection is not None:
            self.totals.rejected += 1
        else:
            self.totals.no_worker += 1
        if downstream.started:
            # An event stream whose worker was lost before its first event, and no other worker
            # could continue it: the client already has a 200, so it learns why from an event.
            why = rejection.message() if rejection else attempts.refusal_message("audio")
            await downstream.end(worker_lost_event(request.path, attempts.tried[0].url, why))
            self.totals.lost += 1
            return
        if rejection is not None:
            # Every worker we could try is busy or loading: their own 503 says when to retry.
            await send_reply(send, rejection.status, rejection.headers, rejection.body)
            return
        await send_unavailable(
            send,
            self.retry_after,
            attempts.refusal_message("answering"),
            workers={"ready": len(self.pool.available()), "total": len(self.pool)},
        )

    def _base(self, worker: Worker) -> httpx.URL:
        base = self._bases.get(worker.url)
        if base is None:  # a worker that joined since: those that left are forgotten too
            self._bases = {w.url: httpx.URL(w.url) for w in self.pool}
            base = self._bases.get(worker.url) or httpx.URL(worker.url)
        return base

    async def _attempt(
        self, lease: Lease, request: UpstreamRequest, downstream: Downstream
    ) -> Attempt | Rejection:
        worker = lease.worker
        worker.counters.requests += 1
        client = self.clients.next()
        upstream = request.to(client, self._base(worker))
        try:
            response = await client.send(upstream, stream=True)
        except httpx.HTTPError as exc:
            self._worker_failed(worker, exc)
            return Attempt.FAILED
        except asyncio.CancelledError:
            worker.counters.client_disconnects += 1
            raise
        chunks = response.aiter_raw()
        try:
            streaming_events = is_event_stream(response.headers.get("content-type"))
            continuable = streaming_events and response.status_code == OK
            if response.status_code == BUSY or (downstream.started and not continuable):
                # Busy, or an answer that cannot continue a stream already begun: another
                # worker may take it (the 503 is kept to pass on if none does).
                try:
                    body = await response.aread()
                except httpx.HTTPError as exc:
                    self._worker_failed(worker, exc)
                    return Attempt.FAILED
                worker.counters.rejected += 1
                return Rejection(response.status_code, self._headers(response, worker), body)
            aligner = EventAligner() if streaming_events else None
            if streaming_events and self.stream_idle_timeout is not None:
                set_read_timeout(response, self.stream_idle_timeout)
            try:
                first = await first_block(chunks, aligner)
            except httpx.HTTPError as exc:
                self._worker_failed(worker, exc)
                return Attempt.FAILED
            return await self._relay_response(
                lease, request, response, chunks, aligner, first, downstream
            )
        except asyncio.CancelledError:
            worker.counters.client_disconnects += 1
            raise
        finally:
            # Closes the upstream connection unless the body was read to the end: that is
            # what tells the worker its client has gone.
            await close_iterator(chunks)
            await response.aclose()

    async def _relay_response(
        self,
        lease: Lease,
        request: UpstreamRequest,
        response: httpx.Response,
        chunks: AsyncIterator[bytes],
        aligner: EventAligner | None,
        first: bytes,
        downstream: Downstream,
    ) -> Attempt:
        worker = lease.worker
        if response.status_code >= 500:
            worker.counters.errors += 1
        else:
            worker.breaker.record_success()

        async def relay(block: bytes) -> None:
            if await downstream.relay(block):
                worker.counters.ttfc.observe(time.perf_counter() - lease.started)

        if not downstream.started:
            headers = self._headers(response, worker)
            await downstream.start(response.status_code, headers, event_stream=aligner is not None)
            if aligner is None and first:
                worker.counters.ttfc.observe(time.perf_counter() - lease.started)
        else:
            await relay(moved_to(worker.url))
        if first:
            await relay(first)
        try:
            async for data in chunks:
                block = aligner.feed(data) if aligner is not None else data
                if block:
                    await relay(block)
        except httpx.HTTPError as exc:
            self._worker_failed(worker, exc)
            if not downstream.committed:
                # Keep-alives are all the client has had from this worker: move the stream.
                return Attempt.FAILED
            worker.counters.lost += 1
            logger.warning(
                "%s %s: lost %s mid-stream: %s",
                request.method,
                request.path,
                worker.url,
                worker.last_error,
            )
            if aligner is not None:
                reason = worker.last_error or "failed"
                await downstream.end(worker_lost_event(request.path, worker.url, reason))
            # Otherwise not an event stream: the only honest signal left is an incomplete
            # body, so return without finishing it and let the server close the connection.
            self.totals.lost += 1
            return Attempt.RELAYED
        await downstream.end(aligner.flush() if aligner is not None else b"")
        worker.counters.completed += 1
        self.totals.completed += 1
        return Attempt.RELAYED

    def _worker_failed(self, worker: Worker, exc: httpx.HTTPError) -> None:
        worker.counters.errors += 1
        worker.last_error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        now = self.pool.clock()
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            worker.breaker.trip(now)  # nothing is listening there: passive health marking
        else:
            worker.breaker.record_failure(now)

    def _headers(self, response: httpx.Response, worker: Worker) -> list[tuple[bytes, bytes]]:
        raw = response.headers.raw
        drop = RESPONSE_HOP_HEADERS | connection_tokens(raw)
        headers = [(k.lower(), v) for k, v in raw if k.lower() not in drop]
        headers.append((WORKER_HEADER, worker.url.encode()))
        return headers


def set_read_timeout(response: httpx.Response, seconds: float) -> None:
    """Change the read timeout of a response whose body is not read yet.

    httpx has one read timeout per request, set before the answer says what it is. httpcore
    takes it from the request's `timeout` extension when it starts reading the body, so the
    body of an event stream can have its own (pinned by test_failover.py).
    """
    timeouts = response.request.extensions.get("timeout")
    if isinstance(timeouts, dict):
        timeouts["read"] = seconds


async def first_block(chunks: AsyncIterator[bytes], aligner: EventAligner | None) -> bytes:
    """The first bytes worth sending: a whole event for event streams (b"": an empty body)."""
    async for data in chunks:
        block = aligner.feed(data) if aligner is not None else data
        if block:
            return block
    return aligner.flush() if aligner is not None else b""


async def close_iterator(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


async def until_disconnect(receive: Receive, work: Awaitable[None]) -> bool:
    """Run `work`, cancelling it if the client disconnects first. True if it did.

    The request body has been read, so the next message from the server is the disconnect.
    """
    task = asyncio.current_task()
    assert task is not None
    state = {"done": False, "gone": False}

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not state["done"]:
            state["gone"] = True
            task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        await work
    except asyncio.CancelledError:
        if not state["gone"]:
            raise
        task.uncancel()
    finally:
        state["done"] = True
        watcher.cancel()
    return state["gone"]
