"""A real uvicorn server in a thread (in-process ASGI transports buffer SSE streams)."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

import uvicorn
from starlette.types import ASGIApp


class LiveServer:
    def __init__(self, app: ASGIApp, **options: Any):
        """`options`: more of uvicorn's settings (the ones a program's `main` passes)."""
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", **options
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.url = ""

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
