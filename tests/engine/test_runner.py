"""The asyncio face of the engine: never blocks the loop, releases the device on cancel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import pytest

from server.engine.device_thread import DeviceThread
from server.engine.engine import EngineConfig, StreamingEngine, SynthesisRequest
from server.engine.loading import LoadedModel
from server.engine.runners import SerialRunner


@pytest.fixture(scope="module")
def runner(turbo_model: LoadedModel) -> SerialRunner:
    return SerialRunner(StreamingEngine(turbo_model, EngineConfig(watermark=False)), DeviceThread())


@pytest.mark.model
def test_event_loop_stays_responsive_while_generating(runner: SerialRunner) -> None:
    async def scenario() -> tuple[int, float]:
        ticks = 0
        worst_gap = 0.0

        async def ticker() -> None:
            nonlocal ticks, worst_gap
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                worst_gap = max(worst_gap, now - last)
                last = now
                ticks += 1

        task = asyncio.create_task(ticker())
        request = SynthesisRequest("Keep the loop free.", chunk_size=10, seed=1, max_new_tokens=16)
        chunks = [chunk async for chunk in runner.stream(request)]
        task.cancel()
        assert chunks[-1].is_last
        return ticks, worst_gap

    ticks, worst_gap = asyncio.run(scenario())
    assert ticks > 10
    assert worst_gap < 0.5


@pytest.mark.model
def test_consumer_leaving_frees_the_device_and_next_request_runs(runner: SerialRunner) -> None:
    async def scenario() -> float:
        request = SynthesisRequest(
            "Stop me early please.", chunk_size=10, seed=1, max_new_tokens=400
        )
        stream = runner.stream(request)
        assert isinstance(stream, AsyncGenerator)
        first = await stream.__anext__()
        assert first.chunk_id == 1
        started = time.perf_counter()
        await stream.aclose()
        released_after = time.perf_counter() - started
        assert not runner.busy
        result = await runner.synthesize(SynthesisRequest("Next.", seed=2, max_new_tokens=5))
        assert result.audio.size > 0
        return released_after

    released_after = asyncio.run(scenario())
    assert released_after < 5  # within one token step, far from the 400-token remainder


@pytest.mark.model
def test_engine_errors_reach_the_consumer(runner: SerialRunner) -> None:
    async def scenario() -> None:
        with pytest.raises(ValueError, match="chunk_size"):
            async for _ in runner.stream(SynthesisRequest("x", chunk_size=1)):
                pass

    asyncio.run(scenario())
