"""The one interface the worker uses to run an engine from asyncio.

A runner owns the device's work: every model call runs on the device's one thread
(`DeviceThread`), never on the event loop. A consumer that stops early (client gone) tells the
generation to stop, and the device is free again before the consumer's clean-up finishes.
Two implementations: `SerialRunner` (one request at a time) and `BatchedRunner` (every stream
of the device decoded together); `make_runner` picks one from the configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from server.engine.engine import SpeechEngine
from server.engine.schema import AudioChunk, SynthesisRequest, SynthesisResult

T = TypeVar("T")


class EngineRunner(ABC):
    engine: SpeechEngine

    @property
    @abstractmethod
    def busy(self) -> bool:
        """True while some request holds the device."""

    @abstractmethod
    def stream(self, request: SynthesisRequest) -> AsyncGenerator[AudioChunk, None]:
        """The request's audio chunks as they are made; leaving early cancels the rest."""

    @abstractmethod
    async def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        """Regular synthesis; cancelling the awaiting task cancels the generation."""

    @abstractmethod
    async def run(self, work: Callable[[], T]) -> T:
        """Any other model work (a voice from a prompt), in turn with the rest."""

    @abstractmethod
    def close(self) -> None:
        """Stop serving; the device thread's owner closes the thread."""


async def release(job: Future[Any]) -> None:
    """Stop caring about `job`: one still waiting for the device never starts; one running
    (told to stop) is waited for, so the device is free when this returns."""
    if job.cancel():
        return
    with contextlib.suppress(BaseException):
        await asyncio.shield(asyncio.wrap_future(job))
