"""The worker's state: model loading status, the runner, admission control, metrics, voices."""

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
from server.engine.device_thread import DeviceThread
from server.engine.engine import SpeechEngine
from server.engine.runners import EngineRunner, make_runner
from server.errors import Draining, NotReady
from server.forms import default_params
from server.metrics import WorkerMetrics
from server.voice_resolver import VoiceResolver
from server.voices import VoiceLibrary
from server.warmup import warm_up, warmup_request

logger = logging.getLogger("server")


class WorkerStatus(StrEnum):
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"  # shutting down: finishing what runs, taking nothing new
    FAILED = "failed"


# How often a drain looks whether the running requests have finished.
DRAIN_POLL_S = 0.05


def set_tf32(enabled: bool) -> None:
    """TF32 (or full float32) for CUDA's float32 matrix products and convolutions, through the
    API this torch has: from 2.9 the per-backend `fp32_precision`, which must not be mixed with
    the older flags there (torch raises on a mix)."""
    matmul: Any = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        precision = "tf32" if enabled else "ieee"
        matmul.fp32_precision = precision
        cudnn: Any = torch.backends.cudnn
        cudnn.conv.fp32_precision = precision
    else:
        matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled
        torch.set_float32_matmul_precision("high" if enabled else "highest")


def apply_torch_settings(config: ServerConfig) -> list[str]:
    """The process-wide torch settings of `config`, applied; what was set, in words. Called on
    the device thread before the model loads (the threads count is that thread's OpenMP team).
    A CPU worker keeps torch's defaults unless told otherwise."""
    applied = []
    threads = config.torch_threads()
    if threads is not None:
        torch.set_num_threads(threads)
        applied.append(f"{threads} CPU threads")
    if config.on_cuda and config.tf32:
        set_tf32(True)
        applied.append("TF32 matrix products and convolutions")
    return applied


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
        # HTTP requests being answered (server/drain.py counts them): a drain waits for them.
        self.requests_in_flight = 0
        self._engine_factory = engine_factory
        # Loads the model and then runs all of its work (device_thread.py says why one).
        self.device = DeviceThread()

    async def load(self) -> None:
        """Build the engine off the event loop and warm it up; /health answers `loading`
        meanwhile."""
        started = time.perf_counter()
        # Damaged voice files are reported while the model loads, not when a request meets one.
        checking = asyncio.create_task(asyncio.to_thread(self.voices.check))
        try:
            engine = await self.device.run_async(self._load_engine)
        except Exception as exc:
            logger.exception("model failed to load")
            self._fail(exc)
            return
        runner = make_runner(engine, self.config.max_batch, self.device)
        if self.config.warmup:
            request = warmup_request(
                default_params(self.config.model), self.config.first_chunk_tokens
            )
            try:
                seconds = await warm_up(runner, request)
            except Exception as exc:
                logger.exception("the warm-up synthesis failed")
                self._fail(exc, "warm-up failed: ")
                return
            logger.info("warmed up in %.1f s (a stream and a regular synthesis)", seconds)
        await checking
        self.runner = runner
        self._resolver = VoiceResolver(self.voices, runner)
        self.model_name, self.device_name = engine.model_name, engine.device_name
        if self.status is WorkerStatus.LOADING:  # not draining already
            self.status = WorkerStatus.READY
        logger.info(
            "ready: %s on %s in %.1f s (%s)",
            self.model_name,
            self.device_name,
            time.perf_counter() - started,
            type(runner).__name__,
        )

    def _load_engine(self) -> SpeechEngine:
        applied = apply_torch_settings(self.config)
        if applied:
            logger.info("torch settings: %s", ", ".join(applied))
        return self._engine_factory()

    def _fail(self, exc: Exception, prefix: str = "") -> None:
        self.status, self.error = WorkerStatus.FAILED, f"{prefix}{type(exc).__name__}: {exc}"

    def ready_runner(self) -> EngineRunner:
        """The runner, for new work; `NotReady` (or `Draining`) when the worker takes none."""
        if self.status is WorkerStatus.DRAINING:
            raise Draining()
        return self.admitted_runner()

    def admitted_runner(self) -> EngineRunner:
        """The runner, for work admitted earlier: it still runs while the worker drains."""
        if self.runner is None:
            if self.status is WorkerStatus.FAILED:
                raise NotReady(f"the model failed to load: {self.error}")
            raise NotReady("the model is still loading")
        return self.runner

    @property
    def idle(self) -> bool:
        """Nothing running, waiting, or being answered."""
        admission = self.admission
        return admission.active == 0 and admission.queued == 0 and self.requests_in_flight == 0

    async def drain(self, timeout: float) -> bool:
        """Take no new requests and wait until the running ones finish, for at most `timeout`
        seconds; True when they did."""
        if self.status is not WorkerStatus.FAILED:
            self.status = WorkerStatus.DRAINING
        started = time.perf_counter()
        logger.info(
            "draining: %d running, %d waiting; exiting when they finish (at most %.0f s)",
            self.admission.active,
            self.admission.queued,
            timeout,
        )
        deadline = started + timeout
        while not self.idle:
            if time.perf_counter() >= deadline:
                logger.warning(
                    "drain timeout (%.0f s) reached: cutting %d running, %d waiting",
                    timeout,
                    self.admission.active,
                    self.admission.queued,
                )
                return False
            await asyncio.sleep(DRAIN_POLL_S)
        logger.info("drained in %.1f s", time.perf_counter() - started)
        return True

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
