"""The worker's state: model loading status, the runner, admission control, metrics, voices."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import torch

from server.admission import Admission
from server.config import ServerConfig
from server.engine.device_thread import DeviceThread
from server.engine.engine import SpeechEngine
from server.engine.runners import EngineRunner, make_runner
from server.errors import NotReady
from server.metrics import WorkerMetrics
from server.voice_resolver import VoiceResolver
from server.voices import VoiceLibrary

logger = logging.getLogger("server")


class WorkerStatus(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


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
        self._resolver: VoiceResolver | None = None
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
        self._resolver = VoiceResolver(self.voices, self.runner)
        self.model_name, self.device_name = engine.model_name, engine.device_name
        self.status = WorkerStatus.READY
        logger.info(
            "ready: %s on %s in %.1f s (%s)",
            self.model_name,
            self.device_name,
            time.perf_counter() - started,
            type(self.runner).__name__,
        )

    def ready_runner(self) -> EngineRunner:
        if self.runner is None:
            if self.status is WorkerStatus.FAILED:
                raise NotReady(f"the model failed to load: {self.error}")
            raise NotReady("the model is still loading")
        return self.runner

    def voice_resolver(self) -> VoiceResolver:
        self.ready_runner()
        assert self._resolver is not None
        return self._resolver

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
