"""Text that arrives in pieces (from a language model, say) for one stream.

The event loop pushes text; the device thread takes the segments that are complete as T3
becomes free for them. Text becomes segments when it is pushed: up to the last sentence end
(`text.SENTENCE_END`: a stop followed by white space, or a Chinese or Japanese full stop, which
needs none), everything at a flush or at the end of the text, or, once the buffered text
reaches the current threshold of the chunk-length schedule, up to the last space (or
full-width comma, in scripts written without spaces). What one push completes is split like a
whole text (`split_into_segments`): a text pushed whole with a flush gives the same segments
as the same text sent at once, and words pushed one by one give one segment per sentence,
each generated as soon as it is complete (sentences are not held back to be merged with the
next).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from server.engine.text import DEFAULT_MAX_SEGMENT_CHARS, SENTENCE_END, split_into_segments

# ElevenLabs' default `chunk_length_schedule`: characters buffered before the 1st, 2nd, ...
# generation starts without a sentence end or flush (the last value repeats).
DEFAULT_CHUNK_LENGTH_SCHEDULE = (120, 160, 250, 290)
# Where text without a sentence end may be cut once it is long enough: after a space, or after
# a full-width comma in Chinese and Japanese, which have no spaces.
_BREAK = re.compile(r"[ ，、：]")


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
        self._buffer = ""  # text not yet part of a segment
        self._segments: list[str] = []  # complete, not yet taken
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
            self._commit(everything=flush)
        self._notify()

    def flush(self) -> None:
        """Generate whatever is buffered, complete or not."""
        self.push("", flush=True)

    def end(self) -> None:
        with self._changed:
            self._ended = True
            self._commit(everything=True)
        self._notify()

    @property
    def ended(self) -> bool:
        return self._ended

    # --- the device thread's side -----------------------------------------------------------

    def take(self) -> list[str] | None:
        """Segments complete now ([]: none yet, wait), or None once the text has ended and
        everything was taken."""
        with self._changed:
            segments, self._segments = self._segments, []
            if not segments and self._ended:
                return None
            return segments

    def ready(self) -> bool:
        """Whether `take` would return something now (segments, or the end)."""
        with self._changed:
            return bool(self._segments) or self._ended

    def wait(self, timeout: float) -> None:
        """Block until the producer changes something, or `timeout` seconds."""
        with self._changed:
            self._changed.wait(timeout)

    def listen(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from the producer's thread) whenever text, a flush or the end
        arrives: the batch scheduler sleeps while every stream waits for text."""
        self._listeners.append(callback)

    def _commit(self, everything: bool) -> None:
        """Move the complete part of the buffer into `_segments` (lock held)."""
        cut = len(self._buffer) if everything else self._cut()
        piece, self._buffer = self._buffer[:cut], self._buffer[cut:]
        segments = split_into_segments(piece, self.max_segment_chars)
        if segments:
            self._segments.extend(segments)
            self._generations += 1

    def _cut(self) -> int:
        """How much of the buffer is complete without a flush."""
        # A full stop at the very end of the buffer ends a sentence when it needs no space
        # after it (。): a closing bracket sent apart from it then opens the next segment.
        ends = list(SENTENCE_END.finditer(self._buffer))
        if ends:
            return ends[-1].end()
        threshold = self.schedule[min(self._generations, len(self.schedule) - 1)]
        if len(self._buffer.strip()) >= threshold:
            breaks = list(_BREAK.finditer(self._buffer.rstrip()))
            return breaks[-1].end() if breaks and breaks[-1].start() > 0 else len(self._buffer)
        return 0

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()
        for callback in list(self._listeners):
            callback()
