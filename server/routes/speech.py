"""`POST /synthesize-stream` (the seeds' SSE events) and `POST /synthesize` (one WAV)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import aclosing

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from server.audio import encode_file
from server.error_responses import native_body
from server.errors import ServiceError
from server.events import audio_chunk_event, done_event, timing_headers, token_digest
from server.form_input import read_speech_form
from server.routes.disconnect import client_gone
from server.synthesis import PING_SECONDS, Synthesis, admit, spoken_languages
from server.worker import Worker


async def synthesize_stream(request: Request) -> Response:
    worker: Worker = request.app.state.worker
    fields = await read_speech_form(request, worker.config, spoken_languages(worker))
    synthesis = await admit(worker, "synthesize-stream", fields)
    return EventSourceResponse(_events(synthesis), ping=PING_SECONDS)


async def _events(synthesis: Synthesis) -> AsyncIterator[ServerSentEvent]:
    last = None
    try:
        async with aclosing(synthesis.chunks()) as chunks:
            async for chunk in chunks:
                last = chunk
                yield ServerSentEvent(json.dumps(audio_chunk_event(chunk)), event="audio_chunk")
    except ServiceError as exc:  # the client is told; the worker carries on
        # The seeds' `{"error": message}`, with the field at fault when there is one.
        yield ServerSentEvent(json.dumps(native_body(exc)), event="error")
        return
    assert last is not None and last.is_last
    yield ServerSentEvent(json.dumps(done_event(last)), event="done")


async def synthesize(request: Request) -> Response:
    worker: Worker = request.app.state.worker
    fields = await read_speech_form(request, worker.config, spoken_languages(worker))
    synthesis = await admit(worker, "synthesize", fields)
    result = await synthesis.whole(client_gone(request))
    summary = result.summary
    headers = timing_headers(result.metrics) | {
        "X-Queue-Wait": f"{synthesis.queue_wait:.4f}",
        "X-Speech-Tokens": str(len(summary.speech_tokens)),
        "X-Speech-Tokens-Digest": token_digest(summary.speech_tokens),
        "X-Token-Cap-Hit": str(summary.token_cap_hit).lower(),
        "X-Seed": str(summary.seed),
    }
    body = await asyncio.to_thread(encode_file, result.audio, "wav")
    return Response(body, media_type="audio/wav", headers=headers)
