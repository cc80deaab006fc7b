"""What the client has been sent of one response, across the workers that may serve it.

A response is *committed* to its worker once the client has seen some of that worker's content.
For most responses that is the first byte. An event stream commits with its first real event:
while a request waits in a worker's queue the worker sends only keep-alive comments, which the
client should get (they stop intermediaries from closing an idle connection), yet if the worker
is lost then, the client has seen nothing of it but a status and headers that any worker would
have sent. So the stream moves to another worker, whose events continue the same body, instead
of ending in an error before any audio.
"""

from __future__ import annotations

from starlette.types import Send

from balancer.replies import RawHeaders
from balancer.sse import has_data

# The SSE comment that says a stream moved: the `x-upstream-worker` header, sent with the
# headers, names the first worker; clients ignore comments, people debugging read them.
MOVED_COMMENT = b": continued on worker "


def moved_to(worker_url: str) -> bytes:
    return MOVED_COMMENT + worker_url.encode() + b"\r\n\r\n"


class Downstream:
    def __init__(self, send: Send):
        self._send = send
        self.started = False  # the status and headers are sent
        self.committed = False  # the client has content from a worker: no moving on
        self.ended = False

    async def start(self, status: int, headers: RawHeaders, *, event_stream: bool) -> None:
        assert not self.started
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        self.started = True
        self.committed = not event_stream

    async def relay(self, block: bytes) -> bool:
        """Send one block of a worker's body; True if it is the first to commit the response."""
        first = not self.committed and has_data(block)
        self.committed = self.committed or first
        await self._send({"type": "http.response.body", "body": block, "more_body": True})
        return first

    async def end(self, tail: bytes = b"") -> None:
        self.ended = True
        await self._send({"type": "http.response.body", "body": tail, "more_body": False})
