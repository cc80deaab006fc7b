"""Every stream of the device decoded together (`BatchScheduler`), one batched T3 step each."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable
from typing import TypeVar

from server.engine.batch_scheduler import DONE, BatchScheduler, DeviceTime
from server.engine.device_thread import DeviceThread
from server.engine.engine import SpeechEngine
from server.engine.runners.base import EngineRunner
from server.engine.schema import AudioChunk, Cancelled, SynthesisRequest, SynthesisResult

T = TypeVar("T")


class BatchedRunner(EngineRunner):
    def __init__(
        self,
        engine: SpeechEngine,
        max_batch: int,
        device: DeviceThread,
        share_flow: bool = True,
    ):
        self.engine = engine
        self._scheduler = BatchScheduler(engine, max_batch, device, share_flow)

    @property
    def busy(self) -> bool:
        return self._scheduler.active > 0

    @property
    def batch_rows(self) -> int:
        return self._scheduler.rows

    @property
    def device_time(self) -> DeviceTime:
        return self._scheduler.device_time

    async def stream(self, request: SynthesisRequest) -> AsyncGenerator[AudioChunk, None]:
        items, cancel = self._submit(request, streaming=True)
        finished = False
        try:
            while True:
                item = await items.get()
                if item is DONE:
                    finished = True
                    return
                if isinstance(item, Cancelled):
                    continue
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, AudioChunk)
                yield item
        finally:
            cancel.set()
            # The stream leaves the batch at the scheduler's next step: wait for that.
            while not finished:
                finished = await asyncio.shield(items.get()) is DONE

    async def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        items, cancel = self._submit(request, streaming=False)
        try:
            result = await items.get()
        except asyncio.CancelledError:
            cancel.set()
            raise
        if isinstance(result, BaseException):
            raise result
        assert isinstance(result, SynthesisResult)
        return result

    def _submit(
        self, request: SynthesisRequest, streaming: bool
    ) -> tuple[asyncio.Queue[object], threading.Event]:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: object) -> None:
            loop.call_soon_threadsafe(items.put_nowait, item)

        self._scheduler.submit(request, emit, cancel, streaming)
        return items, cancel

    async def run(self, work: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def emit(item: object) -> None:
            def settle() -> None:
                if future.done():
                    return
                if isinstance(item, BaseException):
                    future.set_exception(item)
                else:
                    future.set_result(item)  # type: ignore[arg-type]

            loop.call_soon_threadsafe(settle)

        self._scheduler.call(work, emit)
        return await future

    def close(self) -> None:
        self._scheduler.close()
