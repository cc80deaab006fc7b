"""What the batch scheduler needs of an engine: a token batch and per-stream state.

The scheduler (`batch_scheduler.py`) drives T3 for every stream of a device together and asks
each stream's state for everything else (segments, chunks, audio). It sees the model only
through these interfaces, so it never reaches into T3 or S3Gen: `StreamingEngine` implements
them with the real model (`t3_batch.py`, `stream_state.py`), and tests with fast fakes.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol

from server.engine.schema import AudioChunk, SynthesisRequest, SynthesisResult


class SegmentPlan(Protocol):
    """What T3 needs for one sentence group of a stream (`stream_state.SegmentPlan`)."""

    @property
    def index(self) -> int: ...
    @property
    def text_tokens(self) -> Any: ...
    @property
    def t3_cond(self) -> Any: ...
    @property
    def cap(self) -> int: ...
    @property
    def cond_key(self) -> Hashable: ...

    def new_generator(self) -> Any:
        """A fresh sampling generator for the segment (the same tokens whenever it runs)."""
        ...


class TokenBatch(Protocol):
    """Streams decoding T3 together (`t3_batch.TurboBatch` / `OriginalBatch`)."""

    def __len__(self) -> int: ...
    @property
    def keys(self) -> list[Hashable]: ...

    def add(
        self,
        key: Hashable,
        t3_cond: Any,
        text_tokens: Any,
        params: Any,
        generator: Any,
        cond_key: Hashable | None = None,
    ) -> int:
        """Prefill one stream and add it; returns its first token."""
        ...

    def step(self) -> dict[Hashable, int]:
        """One token for every stream."""
        ...

    def remove(self, key: Hashable) -> None: ...


class BatchStream(Protocol):
    """One request's state outside T3 (`stream_state.StreamState`)."""

    @property
    def request(self) -> SynthesisRequest: ...

    def next_segment(self) -> SegmentPlan | None: ...
    def upcoming_segment(self, ahead: int) -> SegmentPlan | None:
        """A segment after the current one whose text is complete, to generate early."""
        ...

    def waiting_for_text(self) -> bool:
        """After `next_segment` gave None: True if more text is coming (text-in streams)."""
        ...

    def accept(self, token: int) -> None: ...
    def hop(self) -> int: ...
    def pending_tokens(self) -> int: ...
    def chunk_due(self) -> bool: ...
    def buffered_seconds(self) -> float: ...
    def prompt_tokens(self) -> int: ...
    def last_chunk_tokens(self) -> int: ...
    def next_chunk(self) -> AudioChunk: ...
    def last_chunk(self) -> AudioChunk: ...
    def whole(self) -> SynthesisResult: ...
