"""The worker's Starlette application: routes, error handlers and the model-loading lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route, WebSocketRoute

from access.gate import Gatekeeper, KeyGate
from server.config import ServerConfig
from server.drain import DrainGuard
from server.engine.engine import SpeechEngine
from server.error_responses import EXCEPTION_HANDLERS
from server.errors import RETRY_AFTER_BUSY_S
from server.routes import (
    elevenlabs_http,
    elevenlabs_socket,
    openai_speech,
    ops,
    seed_websockets,
    speech,
    voices,
)
from server.worker import Worker


def create_app(config: ServerConfig, engine_factory: Callable[[], SpeechEngine]) -> Starlette:
    gatekeeper = keys_from(config)  # KeyFileError when the file cannot be used
    worker = Worker(config, engine_factory)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Serve /health at once ("loading") and load the model in the background.
        loading = asyncio.create_task(worker.load())
        try:
            yield
        finally:
            loading.cancel()
            worker.close()

    app = Starlette(
        routes=[
            Route("/synthesize-stream", speech.synthesize_stream, methods=["POST"]),
            Route("/synthesize", speech.synthesize, methods=["POST"]),
            Route("/v1/audio/speech", openai_speech.speech, methods=["POST"]),
            WebSocketRoute("/ws/tts", seed_websockets.tts),
            WebSocketRoute("/ws/stream/audio", seed_websockets.stream_audio),
            Route(
                "/v1/text-to-speech/{voice_id}", elevenlabs_http.text_to_speech, methods=["POST"]
            ),
            Route(
                "/v1/text-to-speech/{voice_id}/stream",
                elevenlabs_http.text_to_speech,
                methods=["POST"],
            ),
            Route(
                "/v1/text-to-speech/{voice_id}/with-timestamps",
                elevenlabs_http.with_timestamps,
                methods=["POST"],
            ),
            Route(
                "/v1/text-to-speech/{voice_id}/stream/with-timestamps",
                elevenlabs_http.stream_with_timestamps,
                methods=["POST"],
            ),
            WebSocketRoute(
                "/v1/text-to-speech/{voice_id}/stream-input", elevenlabs_socket.stream_input
            ),
            WebSocketRoute(
                "/v1/text-to-speech/{voice_id}/multi-stream-input",
                elevenlabs_socket.multi_stream_input,
            ),
            Route("/voices", voices.create_voice, methods=["POST"]),
            Route("/voices", voices.list_voices, methods=["GET"]),
            Route("/voices/{voice_id}", voices.delete_voice, methods=["DELETE"]),
            Route("/health", ops.health, methods=["GET"]),
            Route("/metrics", ops.metrics, methods=["GET"]),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            # Outermost: a request without the right key is turned away before anything counts it
            *([Middleware(KeyGate, gatekeeper=gatekeeper)] if gatekeeper else []),
            Middleware(DrainGuard, worker=worker),
        ],
        lifespan=lifespan,
    )
    app.state.worker = worker
    app.state.gatekeeper = gatekeeper
    return app


def keys_from(config: ServerConfig) -> Gatekeeper | None:
    """The worker's door: None (open) without a keys file."""
    if config.api_keys_file is None:
        return None
    return Gatekeeper.from_file(
        config.api_keys_file,
        default_max_streams=config.key_max_streams,
        retry_after=RETRY_AFTER_BUSY_S,
        restrict_ops=config.restrict_ops,
    )
