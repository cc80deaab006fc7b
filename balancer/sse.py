"""Server-sent events as a proxy sees them: byte blocks cut at event boundaries.

The balancer relays an event stream in whole events, so when a worker is lost mid-stream the
error event it adds starts on a fresh line instead of being glued to half an event. Cutting
only at boundaries costs one `rfind` per read and never delays an event: a complete event is
sent as soon as its last byte arrives.
"""

from __future__ import annotations

import json

# An event ends with a blank line; sse-starlette uses CRLF, others LF.
BOUNDARIES = (b"\r\n\r\n", b"\n\n", b"\r\r")
# A stream that never ends an event must not make us buffer without bound.
MAX_PENDING_BYTES = 4 * 1024 * 1024
OPENAI_PATH_PREFIX = "/v1/"


def is_event_stream(content_type: str | None) -> bool:
    if not content_type:
        return False
    return content_type.split(";")[0].strip().lower() == "text/event-stream"


class EventAligner:
    """Feed bytes in, get back the complete events among them (b"" while none is complete)."""

    def __init__(self) -> None:
        self._pending = b""

    def flush(self) -> bytes:
        """Whatever is left (a stream that ended mid-event): sent as is at the end."""
        rest, self._pending = self._pending, b""
        return rest

    def feed(self, data: bytes) -> bytes:
        buffer = self._pending + data if self._pending else data
        if buffer.endswith(BOUNDARIES):  # the usual case: whole events in one read
            self._pending = b""
            return buffer
        cut = 0
        for sep in BOUNDARIES:
            found = buffer.rfind(sep)
            if found >= 0:
                cut = max(cut, found + len(sep))
        if cut == 0 and len(buffer) <= MAX_PENDING_BYTES:
            self._pending = buffer
            return b""
        if cut == 0:
            cut = len(buffer)
        self._pending = buffer[cut:]
        return buffer[:cut]


def has_data(block: bytes) -> bool:
    """True when a block of whole events holds a real event, not only keep-alive comments."""
    return block.startswith((b"data", b"event")) or b"\ndata" in block or b"\nevent" in block


def worker_lost_event(path: str, worker: str, reason: str) -> bytes:
    """The error event that ends a stream whose worker went away after its first byte.

    OpenAI-style streams (`/v1/...`) get OpenAI's error shape, the seeds' endpoints theirs.
    """
    message = f"worker lost mid-stream ({worker}: {reason}); retry the request"
    if path.startswith(OPENAI_PATH_PREFIX):
        payload: dict[str, object] = {
            "type": "error",
            "error": {"message": message, "type": "server_error", "code": "worker_lost"},
        }
    else:
        payload = {"error": message}
    return f"event: error\r\ndata: {json.dumps(payload)}\r\n\r\n".encode()
