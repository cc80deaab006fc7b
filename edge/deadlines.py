"""Deadlines for a client to send its request: uvicorn's HTTP/1.1 protocol (h11), with a bound
on how long a request's headers, and then its body, may take to arrive.

uvicorn bounds neither: its keep-alive timer starts only once a response is complete, and any
byte received stops it. A client that connects and sends nothing, or sends its headers or its
body a byte at a time, holds a connection (a socket and its buffers; for a body, a running
request) for as long as it likes, and a few thousand such clients use up a process's file
descriptors. Here a request has `header_timeout` seconds, from the moment the connection is
ready for it (opened, or the previous response sent), until its headers are complete, then
`body_timeout` seconds until its body is. Past either, the client gets a 408 and the connection
is closed (closed without a word if nothing of a request had come: an idle connection). The
deadlines end once the request is in: a response may stream, and a WebSocket live, for hours.
"""

from __future__ import annotations

import asyncio
import json
from typing import Literal

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# Headers are a few hundred bytes, which any client sends at once.
DEFAULT_HEADER_TIMEOUT_S = 10.0
# Bodies are forms and audio prompts of at most ~10 MB: a minute asks for ~1.4 Mbit/s.
DEFAULT_BODY_TIMEOUT_S = 60.0

Phase = Literal["headers", "body"]


class DeadlineProtocol(H11Protocol):
    """Pass the class as uvicorn's `http`; a subclass may set other timeouts."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout: float = DEFAULT_BODY_TIMEOUT_S
    _phase: Phase | None = None
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._follow()

    def handle_events(self) -> None:
        super().handle_events()
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Start the deadline for the part of a request now awaited, when that changes."""
        phase: Phase | None = None
        # After a WebSocket upgrade the transport belongs to the WebSocket's protocol.
        if not self.transport.is_closing() and self.transport.get_protocol() is self:
            if self.conn.their_state is h11.IDLE:
                phase = "headers"
            elif self.conn.their_state is h11.SEND_BODY:
                phase = "body"
        if phase == self._phase:
            return
        self._stop()
        self._phase = phase
        if phase is not None:
            timeout = self.header_timeout if phase == "headers" else self.body_timeout
            self._timer = self.loop.call_later(timeout, self._expire, phase, timeout)

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._phase = None

    def _expire(self, phase: Phase, timeout: float) -> None:
        self._timer = None
        self._phase = None
        if self.transport.is_closing():
            return
        cycle = self.cycle if phase == "body" else None
        begun = phase == "body" or bool(self.conn.trailing_data[0])
        if begun and (cycle is None or not cycle.response_started):
            self.transport.write(timeout_response(phase, timeout))
        if cycle is not None:
            # The request's app sees the client gone, and anything it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


def timeout_response(phase: Phase, timeout: float) -> bytes:
    """A whole 408 response, written past h11 (which has no request to answer yet)."""
    message = f"the request's {phase} did not arrive within {timeout:g} s"
    body = json.dumps({"error": message, "field": phase}).encode()
    head = (
        b"HTTP/1.1 408 Request Timeout\r\n"
        b"content-type: application/json\r\n"
        b"content-length: %d\r\n"
        b"connection: close\r\n\r\n"
    )
    return head % len(body) + body
