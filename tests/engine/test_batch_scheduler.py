"""Many streams on one device through the batch scheduler, with the real engine."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import numpy as np
import pytest

from server.engine.device_thread import DeviceThread
from server.engine.engine import AudioChunk, EngineConfig, StreamingEngine, SynthesisRequest
from server.engine.loading import LoadedModel
from server.engine.runners import BatchedRunner, SerialRunner
from server.engine.sampling import TURBO_DEFAULTS
from server.engine.schema import FlowWindow

pytestmark = pytest.mark.model
SAMPLES_PER_TOKEN = 960


@pytest.fixture(scope="module")
def engine(turbo_model: LoadedModel) -> StreamingEngine:
    # A short flow prompt: the chunks are short, and the flow's cost is mostly its prompt's.
    config = EngineConfig(watermark=False, first_chunk_tokens=6, flow_window=FlowWindow(20, 20))
    return StreamingEngine(turbo_model, config)


@pytest.fixture
def runner(engine: StreamingEngine) -> Iterator[BatchedRunner]:
    device = DeviceThread()
    runner = BatchedRunner(engine, max_batch=4, device=device)
    yield runner
    runner.close()
    device.close()


def _request(seed: int, tokens: int = 14) -> SynthesisRequest:
    return SynthesisRequest(
        f"Stream number {seed}.", TURBO_DEFAULTS, chunk_size=10, seed=seed, max_new_tokens=tokens
    )


async def _collect(stream: AsyncGenerator[AudioChunk, None]) -> list[AudioChunk]:
    return [chunk async for chunk in stream]


def _check_alone_equal(
    engine: StreamingEngine, seed: int, chunks: list[AudioChunk], tokens: int = 14
) -> None:
    summary = chunks[-1].summary
    assert summary is not None
    assert summary.speech_tokens == engine.speech_tokens(_request(seed, tokens))
    assert [c.chunk_id for c in chunks] == list(range(1, len(chunks) + 1))
    audio = np.concatenate([c.audio for c in chunks])
    # No cross-talk: the audio's length is this stream's own tokens (+3 trailing silence).
    assert audio.size == (len(summary.speech_tokens) + 3) * SAMPLES_PER_TOKEN


def test_concurrent_streams_each_get_their_solo_tokens(
    engine: StreamingEngine, runner: BatchedRunner
) -> None:
    async def scenario() -> list[list[AudioChunk]]:
        return list(
            await asyncio.gather(*(_collect(runner.stream(_request(s))) for s in (1, 2, 3)))
        )

    results = asyncio.run(scenario())
    for seed, chunks in zip((1, 2, 3), results, strict=True):
        _check_alone_equal(engine, seed, chunks)
    assert not runner.busy


def test_a_stream_joining_late_and_one_cancelled_leave_the_others_intact(
    engine: StreamingEngine, runner: BatchedRunner
) -> None:
    async def scenario() -> tuple[list[AudioChunk], list[AudioChunk]]:
        first = runner.stream(_request(4))
        doomed = runner.stream(_request(5, tokens=300))
        head = [await first.__anext__()]
        await doomed.__anext__()
        await doomed.aclose()  # cancelled mid-batch
        late = asyncio.create_task(_collect(runner.stream(_request(6))))
        head.extend(await _collect(first))
        return head, await late

    first, late = asyncio.run(scenario())
    _check_alone_equal(engine, 4, first)
    _check_alone_equal(engine, 6, late)
    assert not runner.busy


def test_regular_synthesis_and_voice_work_through_the_scheduler(
    engine: StreamingEngine, runner: BatchedRunner
) -> None:
    from tests.audio import wav_bytes

    async def scenario() -> None:
        result = await runner.synthesize(_request(7))
        assert result.summary.speech_tokens == engine.speech_tokens(_request(7))
        voice = await runner.run(lambda: engine.voices.get(wav_bytes(6.0)))
        chunks = await _collect(
            runner.stream(SynthesisRequest("With a voice.", seed=1, max_new_tokens=8, voice=voice))
        )
        assert chunks[-1].is_last

    asyncio.run(scenario())


def test_scheduler_works_on_the_device_thread_and_hands_it_back(
    engine: StreamingEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = DeviceThread()
    batched = BatchedRunner(engine, max_batch=4, device=device)
    serial = SerialRunner(engine, device)
    started_on: set[int] = set()
    start = engine.start

    def recording_start(*args: Any, **kwargs: Any) -> Any:
        started_on.add(threading.get_ident())
        return start(*args, **kwargs)

    monkeypatch.setattr(engine, "start", recording_start)

    async def scenario() -> list[list[AudioChunk]]:
        both = await asyncio.gather(
            _collect(batched.stream(_request(8))), _collect(serial.stream(_request(9)))
        )
        return [*both, await _collect(batched.stream(_request(10)))]

    try:
        results = asyncio.run(scenario())
        # Idle again, the scheduler has given the thread back: other work runs on it at once.
        device_thread = device.submit(threading.get_ident).result(timeout=10)
    finally:
        batched.close()
        serial.close()
        device.close()
    assert started_on == {device_thread}
    for seed, chunks in zip((8, 9, 10), results, strict=True):
        _check_alone_equal(engine, seed, chunks)


def test_streams_due_together_share_flow_calls(
    engine: StreamingEngine, runner: BatchedRunner
) -> None:
    async def scenario() -> list[list[AudioChunk]]:
        streams = (_collect(runner.stream(_request(s, tokens=30))) for s in (11, 12, 13))
        return list(await asyncio.gather(*streams))

    results = asyncio.run(scenario())
    # They start together, so at least their first chunks come from one flow call...
    assert runner.device_time.shared_flow_calls >= 1
    assert runner.device_time.shared_flow_chunks >= 2
    # ...and each still gets its own tokens and exactly their audio.
    for seed, chunks in zip((11, 12, 13), results, strict=True):
        _check_alone_equal(engine, seed, chunks, tokens=30)
