"""The contexts of one ElevenLabs-style multi-stream socket (`.../multi-stream-input`), counted.

A context opens with the first client message that names a new `context_id`, and closes when
the client closes it (`close_context`, or `close_socket` for all of them), when the worker says
it is finished (`isFinal` with its `contextId`), or when the socket ends, whichever comes first.

Counting must not cost the relay much, so only text frames are looked at, and only those that
can hold a key that matters are parsed: a client frame is a small JSON text chunk, parsed when it
mentions `context_id` or `close_socket`; a worker frame can carry a long base64 audio string, so
it is only searched for `"isFinal"` and parsed when that is followed by `true`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from balancer.counters import SocketCounters

MULTI_STREAM_SUFFIX = "/multi-stream-input"
# A client naming ever more contexts must not make the balancer hold ever more ids: workers
# allow a handful of contexts per socket, so past these limits the extra ones go uncounted.
MAX_CONTEXTS_PER_SOCKET = 64
MAX_CONTEXT_ID_CHARS = 256
FINAL = re.compile(r'"isFinal"\s*:\s*true')


def has_contexts(path: str) -> bool:
    return path.endswith(MULTI_STREAM_SUFFIX)


class Contexts:
    """The contexts open on one socket, counted into every one of `counters` (its worker's and
    the totals)."""

    def __init__(self, counters: Sequence[SocketCounters]):
        self.counters = counters
        self._open: set[str] = set()

    def __len__(self) -> int:
        return len(self._open)

    def from_client(self, text: str) -> None:
        if "context_id" not in text and "close_socket" not in text:
            return
        message = _json_object(text)
        if message is None:
            return
        if message.get("close_socket") is True:
            self.close_all()
            return
        context = message.get("context_id")
        if not isinstance(context, str) or len(context) > MAX_CONTEXT_ID_CHARS:
            return
        if message.get("close_context") is True:
            self._close(context)
        elif context not in self._open and len(self._open) < MAX_CONTEXTS_PER_SOCKET:
            self._open.add(context)
            for c in self.counters:
                c.contexts_open += 1
                c.contexts_opened += 1

    def from_worker(self, text: str) -> None:
        if not self._open or '"isFinal"' not in text or FINAL.search(text) is None:
            return
        message = _json_object(text)
        if message is not None:
            context = message.get("contextId", message.get("context_id"))
            if isinstance(context, str):
                self._close(context)

    def close_all(self) -> None:
        for c in self.counters:
            c.contexts_open -= len(self._open)
        self._open.clear()

    def _close(self, context: str) -> None:
        if context in self._open:
            self._open.discard(context)
            for c in self.counters:
                c.contexts_open -= 1


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        message = json.loads(text)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None
