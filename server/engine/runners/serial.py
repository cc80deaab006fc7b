"""One request at a time on the device, each running the engine's own generation loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import TypeVar

from server.engine.device_thread import DeviceThread
from server.engine.engine import SpeechEngine
from server.engine.runners.base import EngineRunner, release
from server.engine.schema import AudioChunk, Cancelled, SynthesisRequest, SynthesisResult

T = TypeVar("T")


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_END = object()


class SerialRunner(EngineRunner):
    def __init__(self, engine: SpeechEngine, device: DeviceThread):
        """`device`: the thread the engine's model was loaded on."""
        self.engine = engine
        self._device = device
        self._holding = False

    @property
    def busy(self) -> bool:
        return self._holding

    async def stream(self, request: SynthesisRequest) -> AsyncGenerator[AudioChunk, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()

        def produce() -> None:
            try:
                for chunk in self.engine.stream(request, cancel):
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except Cancelled:
                pass
            except BaseException as exc:  # reported to the consumer, never lost
                loop.call_soon_threadsafe(queue.put_nowait, _Failed(exc))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        job = self._device.submit(self._holding_device(produce))
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                assert isinstance(item, AudioChunk)
                yield item
        finally:
            cancel.set()
            await release(job)

    async def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        cancel = threading.Event()
        return await self._call(lambda: self.engine.synthesize(request, cancel), cancel)

    async def run(self, work: Callable[[], T]) -> T:
        return await self._call(work, None)

    async def _call(self, work: Callable[[], T], cancel: threading.Event | None) -> T:
        job = self._device.submit(self._holding_device(work))
        try:
            return await asyncio.shield(asyncio.wrap_future(job))
        except asyncio.CancelledError:
            if cancel is not None:
                cancel.set()
            await release(job)
            raise

    def _holding_device(self, work: Callable[[], T]) -> Callable[[], T]:
        def run() -> T:
            self._holding = True
            try:
                return work()
            finally:
                self._holding = False

        return run

    def close(self) -> None:
        pass  # nothing of its own: the work it submitted ends with the device thread
