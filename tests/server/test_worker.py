"""The worker's model thread: the model is loaded and run on one and the same thread."""

from __future__ import annotations

import asyncio
import threading

from server.config import ServerConfig
from server.engine.engine import SynthesisRequest
from server.worker import Worker
from tests.fakes import FakeEngine


def test_model_is_loaded_and_run_on_one_thread(base_config: ServerConfig) -> None:
    fake = FakeEngine(chunks=2, delay=0.0)
    loaded_on: list[int] = []

    def factory() -> FakeEngine:
        loaded_on.append(threading.get_ident())
        return fake

    worker = Worker(base_config, factory)

    async def scenario() -> int:
        await worker.load()
        runner = worker.ready_runner()
        chunks = [c async for c in runner.stream(SynthesisRequest("Hello there.", seed=1))]
        assert chunks[-1].is_last
        await runner.synthesize(SynthesisRequest("And again.", seed=2))
        return await runner.run(threading.get_ident)

    try:
        other_work_on = asyncio.run(scenario())
    finally:
        worker.close()
    assert loaded_on and loaded_on[0] != threading.get_ident()
    assert fake.threads == {loaded_on[0]}
    assert other_work_on == loaded_on[0]
