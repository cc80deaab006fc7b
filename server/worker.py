"""The worker's state: model loading status, admission control, metrics and voices."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import torch

from server.admission import Admission
from server.config import ServerConfig
from server.engine.conditionals import VoiceConditionals
from server.engine.device_thread import DeviceThread
from server.engine.engine import SpeechEngine, StreamingEngine
from server.engine.runner import BatchedEngineRunner, EngineRunner, PreparedPrompt
from server.forms import FieldError, SpeechFields
from server.metrics import WorkerMetrics
from server.voices import VoiceLibrary, VoiceNotFoundError

logger = logging.getLogger("server")


class WorkerStatus(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class NotReady(Exception):
    """The model is not loaded (yet, or at all)."""


class Worker:
    def __init__(self, config: ServerConfig, engine_factory: Callable[[], SpeechEngine]):
        self.config = config
        self.admission = Admission(config.max_streams, config.max_queue)
        self.metrics = WorkerMetrics(
            active=lambda: self.admission.active, queued=lambda: self.admission.queued
        )
        self.voices = VoiceLibrary(config.voices_dir, torch.device(config.device))
        self.status = WorkerStatus.LOADING
        self.error: str | None = None
        self.runner: EngineRunner | None = None
        self.model_name = config.model.value
        self.device_name = config.device
        self.started = time.time()
        self._engine_factory = engine_factory
        # Loads the model and then runs all of its work (device_thread.py says why one).
        self.device = DeviceThread()

    async def load(self) -> None:
        """Build the engine off the event loop; /health answers `loading` meanwhile."""
        started = time.perf_counter()
        try:
            engine = await self.device.run_async(self._engine_factory)
        except Exception as exc:
            logger.exception("model failed to load")
            self.status, self.error = WorkerStatus.FAILED, f"{type(exc).__name__}: {exc}"
            return
        self.runner = make_runner(engine, self.config.max_batch, self.device)
        self.model_name, self.device_name = engine.model_name, engine.device_name
        self.status = WorkerStatus.READY
        logger.info(
            "ready: %s on %s in %.1f s",
            self.model_name,
            self.device_name,
            time.perf_counter() - started,
        )

    def ready_runner(self) -> EngineRunner:
        if self.runner is None:
            if self.status is WorkerStatus.FAILED:
                raise NotReady(f"the model failed to load: {self.error}")
            raise NotReady("the model is still loading")
        return self.runner

    async def voice_for(self, fields: SpeechFields) -> VoiceSelection:
        """Validate the voice part of a request now; compute model work later, in turn."""
        runner = self.ready_runner()
        if fields.voice is not None:
            try:
                saved = await asyncio.to_thread(self.voices.load, fields.voice)
            except VoiceNotFoundError:
                raise FieldError("voice", f"unknown voice {fields.voice!r}") from None
            return VoiceSelection(saved=saved)
        if fields.audio_prompt is not None:
            return VoiceSelection(prompt=await runner.prepare_prompt(fields.audio_prompt))
        return VoiceSelection()

    def health(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "model": self.model_name,
            "device": self.device_name,
            "active_streams": self.admission.active,
            "queued": self.admission.queued,
            "capacity": self.admission.max_active,
            "max_queue": self.admission.max_queue,
            "uptime_s": round(time.time() - self.started, 1),
            **({"error": self.error} if self.error else {}),
        }

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
        self.device.close()


def make_runner(engine: SpeechEngine, max_batch: int, device: DeviceThread) -> EngineRunner:
    if max_batch > 1 and isinstance(engine, StreamingEngine):
        return BatchedEngineRunner(engine, max_batch, device)
    return EngineRunner(engine, device)


class VoiceSelection:
    """A request's voice: saved, from an audio prompt, or (neither) the built-in one."""

    def __init__(
        self, saved: VoiceConditionals | None = None, prompt: PreparedPrompt | None = None
    ):
        self.saved = saved
        self.prompt = prompt

    async def resolve(self, runner: EngineRunner) -> VoiceConditionals | None:
        if self.prompt is not None:
            return await runner.voice_from_prompt(self.prompt)
        return self.saved
