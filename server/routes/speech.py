"""`POST /synthesize-stream` (SSE) and `POST /synthesize` (one WAV)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from server.admission import Ticket
from server.audio import encode_file
from server.engine.conditionals import AudioPromptError, VoiceConditionals
from server.engine.engine import AudioChunk, SynthesisRequest
from server.events import (
    audio_chunk_event,
    done_event,
    error_event,
    timing_headers,
    token_digest,
)
from server.form_input import read_speech_form
from server.forms import SpeechFields
from server.worker import VoiceSelection, Worker

logger = logging.getLogger("server")
T = TypeVar("T")
PING_SECONDS = 5  # keeps proxies from timing out while a request waits for the model


def engine_request(
    fields: SpeechFields, started: float, voice: VoiceConditionals | None
) -> SynthesisRequest:
    return SynthesisRequest(
        text=fields.text,
        params=fields.params,
        chunk_size=fields.chunk_size,
        seed=fields.seed,
        max_new_tokens=fields.max_new_tokens,
        voice=voice,
        started_at=started,
    )


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client goes away first (plain responses are not
    cancelled by the server on disconnect, unlike streams)."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await task
    finally:
        watcher.cancel()


async def _admit(request: Request) -> tuple[Worker, SpeechFields, VoiceSelection, Ticket]:
    """Everything that can refuse a request, before any response starts: readiness, the
    form, the voice, then a place in line (last, so a refused request holds none)."""
    worker: Worker = request.app.state.worker
    worker.ready_runner()
    fields = await read_speech_form(request, worker.config)
    voice = await worker.voice_for(fields)
    return worker, fields, voice, worker.admission.reserve()


async def synthesize_stream(request: Request) -> Response:
    started = time.perf_counter()
    worker, fields, voice, ticket = await _admit(request)
    return EventSourceResponse(
        _stream_events(worker, ticket, fields, voice, started), ping=PING_SECONDS
    )


async def _stream_events(
    worker: Worker, ticket: Ticket, fields: SpeechFields, voice: VoiceSelection, started: float
) -> AsyncIterator[ServerSentEvent]:
    outcome, last, waited = "error", None, 0.0
    try:
        async with ticket.running() as waited:
            worker.metrics.queue_wait.observe(waited)
            runner = worker.ready_runner()
            request = engine_request(fields, started, await voice.resolve(runner))
            async for chunk in runner.stream(request):
                if chunk.chunk_id == 1:
                    worker.metrics.first_chunk.labels("synthesize-stream").observe(
                        chunk.metrics.first_chunk_latency
                    )
                yield ServerSentEvent(json.dumps(audio_chunk_event(chunk)), event="audio_chunk")
                last = chunk
        assert last is not None and last.is_last
        yield ServerSentEvent(json.dumps(done_event(last)), event="done")
        outcome = "ok"
    except asyncio.CancelledError:  # the client went away; the engine has been told
        outcome = "disconnected"
        raise
    except AudioPromptError as exc:
        outcome = "bad_prompt"
        yield ServerSentEvent(json.dumps(error_event(str(exc))), event="error")
    except Exception as exc:  # the client is told, the worker carries on
        logger.exception("stream failed")
        worker.metrics.errors.labels(type(exc).__name__).inc()
        yield ServerSentEvent(json.dumps(error_event(f"synthesis failed: {exc}")), event="error")
    finally:
        ticket.release()
        _record(worker, "synthesize-stream", outcome, last, waited, started)


def _record(
    worker: Worker,
    endpoint: str,
    outcome: str,
    last: AudioChunk | None,
    waited: float,
    started: float,
) -> None:
    worker.metrics.requests.labels(endpoint, outcome).inc()
    total = time.perf_counter() - started
    if last is None:
        logger.info("%s %s total=%.2fs wait=%.2fs", endpoint, outcome, total, waited)
        return
    m = last.metrics
    worker.metrics.audio_seconds.inc(m.total_audio_duration)
    if outcome == "ok":
        worker.metrics.rtf.observe(m.rtf)
    logger.info(
        "%s %s chunks=%d first=%.2fs total=%.2fs audio=%.2fs rtf=%.2f wait=%.2fs%s",
        endpoint,
        outcome,
        last.chunk_id,
        m.first_chunk_latency,
        total,
        m.total_audio_duration,
        m.rtf,
        waited,
        f" tokens={len(last.summary.speech_tokens)} cap_hit={last.summary.token_cap_hit}"
        if last.summary
        else "",
    )


async def synthesize(request: Request) -> Response:
    started = time.perf_counter()
    worker, fields, voice, ticket = await _admit(request)
    outcome = "error"
    try:
        async with ticket.running() as waited:
            worker.metrics.queue_wait.observe(waited)
            runner = worker.ready_runner()
            engine_req = engine_request(fields, started, await voice.resolve(runner))
            result = await cancel_on_disconnect(request, runner.synthesize(engine_req))
        outcome = "ok"
    except asyncio.CancelledError:
        outcome = "disconnected"
        raise
    finally:
        worker.metrics.requests.labels("synthesize", outcome).inc()
    worker.metrics.first_chunk.labels("synthesize").observe(result.metrics.total_latency)
    worker.metrics.audio_seconds.inc(result.metrics.total_audio_duration)
    worker.metrics.rtf.observe(result.metrics.rtf)
    summary = result.summary
    headers = timing_headers(result.metrics) | {
        "X-Queue-Wait": f"{waited:.4f}",
        "X-Speech-Tokens": str(len(summary.speech_tokens)),
        "X-Speech-Tokens-Digest": token_digest(summary.speech_tokens),
        "X-Token-Cap-Hit": str(summary.token_cap_hit).lower(),
        "X-Seed": str(summary.seed),
    }
    logger.info(
        "synthesize ok total=%.2fs audio=%.2fs rtf=%.2f wait=%.2fs tokens=%d",
        result.metrics.total_latency,
        result.metrics.total_audio_duration,
        result.metrics.rtf,
        waited,
        len(summary.speech_tokens),
    )
    body = await asyncio.to_thread(encode_file, result.audio, "wav")
    return Response(body, media_type="audio/wav", headers=headers)
