"""The one way a synthesis request goes through the worker, whatever the endpoint.

A route parses its own input into `SpeechFields`, calls `admit` (everything that can refuse
the request happens there, before any response starts: readiness, the language, the voice, a
place in line) and then takes the audio as chunks (`chunks`) or whole (`whole`), formatting it
in its own API's shape. This module owns the rest: waiting for a running slot, the runner call,
cancellation when the client goes away, metrics (queue wait, first chunk, RTF, audio seconds,
outcome, errors by kind), logging and turning engine failures into `SynthesisFailed`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from access.identity import key_name
from server.admission import Ticket
from server.engine.runners import EngineRunner
from server.engine.schema import AudioChunk, SynthesisRequest, SynthesisResult
from server.errors import ServiceError, SynthesisFailed
from server.forms import SpeechFields, validate_language
from server.voice_resolver import ResolvedVoice

if TYPE_CHECKING:
    from server.worker import Worker

logger = logging.getLogger("server")
T = TypeVar("T")

# SSE keep-alive: proxies time out idle connections while a request waits for the device.
PING_SECONDS = 5


async def admit(worker: Worker, endpoint: str, fields: SpeechFields) -> Synthesis:
    """A request's place in line, or the error that refuses it (`ServiceError`)."""
    started = time.perf_counter()
    runner = worker.ready_runner()
    validate_language(fields.language, runner.engine.languages, fields.language_field)
    voice = await worker.voice_resolver().resolve(fields.voice)
    return Synthesis(worker, endpoint, fields, voice, worker.admission.reserve(), started)


def spoken_languages(worker: Worker) -> tuple[str, ...] | None:
    """The languages of the loaded model; None while none is loaded."""
    return None if worker.runner is None else worker.runner.engine.languages


@dataclass
class _Progress:
    last: AudioChunk | SynthesisResult | None = None  # the latest audio, with its metrics


class Synthesis:
    """One admitted request. Take its audio once, with `chunks()` or `whole()`."""

    def __init__(
        self,
        worker: Worker,
        endpoint: str,
        fields: SpeechFields,
        voice: ResolvedVoice,
        ticket: Ticket,
        started: float,
    ):
        self.worker = worker
        self.endpoint = endpoint
        self.fields = fields
        self._voice = voice
        self._ticket = ticket
        self.started = started
        self.queue_wait = 0.0

    async def chunks(self) -> AsyncGenerator[AudioChunk, None]:
        """The audio as it is made. Leaving early (the client went away) stops the
        generation; a failure raises `ServiceError` (`SynthesisFailed` for engine errors)."""
        async with self._serving() as (runner, progress):
            async for chunk in runner.stream(await self._engine_request()):
                if chunk.chunk_id == 1:
                    self._observe_first_audio(chunk.metrics.first_chunk_latency)
                progress.last = chunk
                yield chunk

    async def whole(self, disconnected: Awaitable[None]) -> SynthesisResult:
        """Regular synthesis; stopped if `disconnected` completes first (plain responses are
        not cancelled by the server when their client goes away, unlike streams)."""
        async with self._serving() as (runner, progress):
            request = await self._engine_request()
            result = await _unless(disconnected, runner.synthesize(request))
            self._observe_first_audio(result.metrics.total_latency)
            progress.last = result
        return result

    @asynccontextmanager
    async def _serving(self) -> AsyncIterator[tuple[EngineRunner, _Progress]]:
        """Waits for a running slot (recording the wait) and holds it while the audio is
        made; then gives the place back and records the outcome, however the request ended."""
        progress, outcome = _Progress(), "error"
        try:
            async with self._ticket.running() as waited:
                self.queue_wait = waited
                self.worker.metrics.queue_wait.observe(waited)
                # Admitted before a drain began, it runs to its end during the drain.
                yield self.worker.admitted_runner(), progress
            outcome = "ok"
        except (asyncio.CancelledError, GeneratorExit):
            outcome = "disconnected"
            raise
        except Exception as exc:
            raise self._failure(exc) from exc
        finally:
            self._ticket.release()
            self._record(outcome, progress.last)

    async def _engine_request(self) -> SynthesisRequest:
        fields = self.fields
        return SynthesisRequest(
            text=fields.text,
            params=fields.params,
            chunk_size=fields.chunk_size,
            seed=fields.seed,
            max_new_tokens=fields.max_new_tokens,
            voice=await self._voice.conditionals(),
            started_at=self.started,
            text_feed=fields.text_feed,
            language=fields.language,
        )

    def _observe_first_audio(self, seconds: float) -> None:
        self.worker.metrics.first_chunk.labels(self.endpoint).observe(seconds)

    def _failure(self, exc: Exception) -> ServiceError:
        self.worker.metrics.errors.labels(type(exc).__name__).inc()
        if isinstance(exc, ServiceError):  # e.g. a prompt found unusable on the device
            return exc
        logger.error("%s failed", self.endpoint, exc_info=exc)
        return SynthesisFailed(f"synthesis failed: {exc}")

    def _record(self, outcome: str, last: AudioChunk | SynthesisResult | None) -> None:
        worker = self.worker
        metrics = last.metrics if last is not None else None
        worker.metrics.requests.labels(self.endpoint, outcome).inc()
        total = time.perf_counter() - self.started
        who = f" key={name}" if (name := key_name()) is not None else ""  # never the key itself
        if metrics is None:
            logger.info(
                "%s %s total=%.2fs wait=%.2fs%s",
                self.endpoint,
                outcome,
                total,
                self.queue_wait,
                who,
            )
            return
        worker.metrics.audio_seconds.inc(metrics.total_audio_duration)
        if outcome == "ok":
            worker.metrics.rtf.observe(metrics.rtf)
        summary = last.summary if last is not None else None  # on a stream's last chunk
        logger.info(
            "%s %s chunks=%d first=%.2fs total=%.2fs audio=%.2fs rtf=%.2f wait=%.2fs%s%s",
            self.endpoint,
            outcome,
            metrics.chunks_generated,
            metrics.first_chunk_latency,
            total,
            metrics.total_audio_duration,
            metrics.rtf,
            self.queue_wait,
            f" tokens={len(summary.speech_tokens)} cap_hit={summary.token_cap_hit}"
            if summary
            else "",
            who,
        )


async def _unless(disconnected: Awaitable[None], work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if `disconnected` completes first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(disconnected)
    watcher.add_done_callback(lambda _: task.cancel())
    try:
        return await task
    finally:
        watcher.cancel()
