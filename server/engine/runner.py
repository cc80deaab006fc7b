"""Puts a `StreamingEngine` behind asyncio without ever blocking the event loop.

All model work runs on the device's one thread (`DeviceThread`), so exactly one inference uses
the device at a time, on the thread that loaded the model; chunks cross to the loop with
`call_soon_threadsafe`. When the consumer stops early (client gone), the generation is told to
stop and the device is released before the consumer's clean-up finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from server.engine.batch_scheduler import DONE, BatchScheduler, DeviceTime
from server.engine.conditionals import VoiceConditionals, audio_key
from server.engine.device_thread import DeviceThread
from server.engine.engine import (
    AudioChunk,
    Cancelled,
    SpeechEngine,
    StreamingEngine,
    SynthesisRequest,
    SynthesisResult,
)
from server.engine.types import Audio

T = TypeVar("T")


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_END = object()


async def _release(job: Future[Any]) -> None:
    """Stop caring about `job`: one still waiting for the device never starts; one running
    (told to stop) is waited for, so the device is free when this returns."""
    if job.cancel():
        return
    with contextlib.suppress(BaseException):
        await asyncio.shield(asyncio.wrap_future(job))


@dataclass(frozen=True)
class PreparedPrompt:
    key: str  # content hash
    wav: Audio | None = None  # decoded samples, when the voice is still to be computed
    voice: VoiceConditionals | None = None  # the voice, when it was already known


class EngineRunner:
    def __init__(self, engine: SpeechEngine, device: DeviceThread | None = None):
        """`device`: the thread the engine's model was loaded on (None: a thread of its own,
        closed with the runner)."""
        self.engine = engine
        self._owns_device = device is None
        self._device = device or DeviceThread("engine")
        self._holding = False

    @property
    def busy(self) -> bool:
        """True while some request holds the device."""
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
            await _release(job)

    async def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        cancel = threading.Event()
        return await self._call(lambda: self.engine.synthesize(request, cancel), cancel)

    async def prepare_prompt(self, audio: bytes) -> PreparedPrompt:
        """Decode and validate an audio prompt off the model thread, so a bad one is reported
        at once (`AudioPromptError`); nothing to do for a prompt seen before."""
        key = audio_key(audio)
        known = self.engine.voices.lookup(key)
        if known is not None:
            return PreparedPrompt(key, voice=known)
        return PreparedPrompt(key, wav=await asyncio.to_thread(self.engine.voices.decode, audio))

    async def voice_from_prompt(self, prompt: PreparedPrompt) -> VoiceConditionals:
        """The prompt's voice, computed on the model thread unless cached."""
        if prompt.voice is not None:
            return prompt.voice
        voices, wav = self.engine.voices, prompt.wav
        assert wav is not None
        return await self._call(lambda: voices.from_decoded(prompt.key, wav), None)

    async def voice_from_audio(self, audio: bytes) -> VoiceConditionals:
        return await self.voice_from_prompt(await self.prepare_prompt(audio))

    async def run(self, work: Callable[[], T]) -> T:
        """Any other model work, in turn with the rest."""
        return await self._call(work, None)

    async def _call(self, work: Callable[[], T], cancel: threading.Event | None) -> T:
        job = self._device.submit(self._holding_device(work))
        try:
            return await asyncio.shield(asyncio.wrap_future(job))
        except asyncio.CancelledError:
            if cancel is not None:
                cancel.set()
            await _release(job)
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
        if self._owns_device:
            self._device.close()


class BatchedEngineRunner(EngineRunner):
    """The same interface, every stream of the device decoded together (`BatchScheduler`)."""

    def __init__(
        self,
        engine: StreamingEngine,
        max_batch: int,
        device: DeviceThread | None = None,
        share_flow: bool = True,
    ):
        super().__init__(engine, device)
        self._scheduler = BatchScheduler(engine, max_batch, self._device, share_flow)

    @property
    def busy(self) -> bool:
        return self._scheduler.active > 0

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

    async def _call(self, work: Callable[[], T], cancel: threading.Event | None) -> T:
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
        super().close()
