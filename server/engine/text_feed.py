"""Text that arrives in pieces (from a language model, say) for one stream.

The event loop pushes text; the device thread takes complete segments as T3 becomes free for
them. A segment is complete at a sentence end (a terminator followed by white space), at a
flush, once the buffered text reaches the current threshold of the chunk-length schedule
(cut at the last space), or at the end of the text. Each taken piece is split like a whole
text (`split_into_segments`), so a text pushed whole and flushed (or ended) gives the same
segments as the same text sent at once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from server.engine.text import DEFAULT_MAX_SEGMENT_CHARS, split_into_segments

# ElevenLabs' default `chunk_length_schedule`: characters buffered before the 1st, 2nd, ...
# generation starts without a sentence end or flush (the last value repeats).
DEFAULT_CHUNK_LENGTH_SCHEDULE = (120, 160, 250, 290)
# A sentence ends at a terminator, possibly closed by quotes or brackets, then white space.
_SENTENCE_END = re.compile(r"[.!?;…。！？][\"'”’)\]]*\s")


class TextFeed:
    def __init__(
        self,
        schedule: tuple[int, ...] = DEFAULT_CHUNK_LENGTH_SCHEDULE,
        max_segment_chars: int = DEFAULT_MAX_SEGMENT_CHARS,
    ):
        if not schedule or min(schedule) < 1:
            raise ValueError("the chunk-length schedule needs positive character counts")
        self.schedule = schedule
        self.max_segment_chars = max_segment_chars
        self._buffer = ""
        self._flush = False
        self._ended = False
        self._generations = 0  # pieces taken so far: the schedule's position
        self._changed = threading.Condition()
        self._listeners: list[Callable[[], None]] = []

    # --- the producer's side (any thread) ---------------------------------------------------

    def push(self, text: str, flush: bool = False) -> None:
        with self._changed:
            if self._ended:
                raise ValueError("the text has ended")
            self._buffer += text
            self._flush = self._flush or flush
        self._notify()

    def flush(self) -> None:
        """Generate whatever is buffered, complete or not."""
        self.push("", flush=True)

    def end(self) -> None:
        with self._changed:
            self._ended = True
        self._notify()

    @property
    def ended(self) -> bool:
        return self._ended

    # --- the device thread's side -----------------------------------------------------------

    def take(self) -> list[str] | None:
        """Segments complete now ([]: none yet, wait), or None once the text has ended and
        everything was taken."""
        with self._changed:
            cut = self._cut()
            piece, self._buffer = self._buffer[:cut], self._buffer[cut:]
            if self._flush or self._ended:
                self._flush = False
            segments = split_into_segments(piece, self.max_segment_chars)
            if segments:
                self._generations += 1
                return segments
            if self._ended and not self._buffer.strip():
                return None
            return []

    def ready(self) -> bool:
        """Whether `take` would return something now (segments, or the end)."""
        with self._changed:
            return self._ended or (self._cut() > 0 and bool(self._buffer[: self._cut()].strip()))

    def wait(self, timeout: float) -> None:
        """Block until the producer changes something, or `timeout` seconds."""
        with self._changed:
            self._changed.wait(timeout)

    def listen(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from the producer's thread) whenever text, a flush or the end
        arrives: the batch scheduler sleeps while every stream waits for text."""
        self._listeners.append(callback)

    def _cut(self) -> int:
        """How much of the buffer is complete."""
        if self._flush or self._ended:
            return len(self._buffer)
        ends = list(_SENTENCE_END.finditer(self._buffer))
        if ends:
            return ends[-1].end()
        threshold = self.schedule[min(self._generations, len(self.schedule) - 1)]
        if len(self._buffer.strip()) >= threshold:
            space = self._buffer.rstrip().rfind(" ")
            return space + 1 if space > 0 else len(self._buffer)
        return 0

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()
        for callback in list(self._listeners):
            callback()
