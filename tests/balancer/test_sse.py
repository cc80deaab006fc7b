"""Event streams cut at event boundaries, and the error event for a lost worker."""

from __future__ import annotations

import json
import random

import pytest

from balancer.sse import EventAligner, has_data, is_event_stream, worker_lost_event

CRLF_EVENTS = [
    b": ping - 2026-01-01\r\n\r\n",
    b'event: audio_chunk\r\ndata: {"chunk_id": 1}\r\n\r\n',
    b'event: audio_chunk\r\ndata: {"chunk_id": 2, "audio_chunk": "' + b"A" * 5000 + b'"}\r\n\r\n',
    b'event: done\r\ndata: {"total_chunks": 2}\r\n\r\n',
]
LF_EVENTS = [b"data: one\n\n", b"event: x\ndata: two\ndata: lines\n\n", b": comment\n\n"]


@pytest.mark.parametrize("events", [CRLF_EVENTS, LF_EVENTS])
@pytest.mark.parametrize("seed", range(20))
def test_blocks_are_whole_events_and_add_up_to_the_input(events: list[bytes], seed: int) -> None:
    data = b"".join(events)
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 12)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    aligner = EventAligner()
    blocks = [b for b in (aligner.feed(p) for p in pieces) if b]
    blocks.append(aligner.flush())
    assert b"".join(blocks) == data
    boundaries = {0}
    for event in events:
        boundaries.add(max(boundaries) + len(event))
    position = 0
    for block in blocks:
        position += len(block)
        assert position in boundaries  # never half an event


def test_a_partial_event_waits_and_flush_returns_it() -> None:
    aligner = EventAligner()
    assert aligner.feed(b"event: audio_chunk\r\ndata: {") == b""
    assert (
        aligner.feed(b'"a": 1}\r\n\r\nevent: do') == b'event: audio_chunk\r\ndata: {"a": 1}\r\n\r\n'
    )
    assert aligner.flush() == b"event: do"
    assert aligner.flush() == b""


def test_a_stream_without_boundaries_is_not_buffered_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("balancer.sse.MAX_PENDING_BYTES", 10)
    aligner = EventAligner()
    assert aligner.feed(b"data: 12") == b""
    assert aligner.feed(b"345678") == b"data: 12345678"


def test_has_data_tells_events_from_pings() -> None:
    assert not has_data(b": ping\r\n\r\n")
    assert has_data(b": ping\r\n\r\nevent: audio_chunk\r\ndata: {}\r\n\r\n")
    assert has_data(b"data: x\n\n")


def test_content_types() -> None:
    assert is_event_stream("text/event-stream; charset=utf-8")
    assert not is_event_stream("audio/wav") and not is_event_stream(None)


def parse(event: bytes) -> tuple[str, dict[str, object]]:
    lines = event.decode().strip().split("\r\n")
    assert lines[0] == "event: error" and lines[1].startswith("data: ")
    assert event.endswith(b"\r\n\r\n")
    return lines[0], json.loads(lines[1][len("data: ") :])


def test_worker_lost_event_in_the_seeds_shape() -> None:
    _, data = parse(worker_lost_event("/synthesize-stream", "http://w:1", "ReadError"))
    assert set(data) == {"error"}
    assert "worker lost" in str(data["error"]) and "http://w:1" in str(data["error"])


def test_worker_lost_event_in_openai_shape_for_v1() -> None:
    _, data = parse(worker_lost_event("/v1/audio/speech", "http://w:1", "ReadError"))
    assert data["type"] == "error"
    error = data["error"]
    assert isinstance(error, dict) and "worker lost" in error["message"]
