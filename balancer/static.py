"""The built frontend, served at `/` by the balancer, without shadowing the workers' API.

Everything that is not a balancer endpoint goes to a worker, except GET/HEAD requests for a
file that exists in the static directory (and `/` itself, which is `index.html`). The
workers' API paths are never looked up on disk, so no file can hide them.
"""

from __future__ import annotations

from pathlib import Path

from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

API_PREFIXES = ("/synthesize", "/v1/", "/voices")


class FrontendOrProxy:
    def __init__(self, static_dir: Path | None, proxy: ASGIApp):
        self.proxy = proxy
        self.root = static_dir.resolve() if static_dir is not None else None
        self.files = (
            StaticFiles(directory=self.root, html=True)
            if self.root is not None and (self.root / "index.html").is_file()
            else None
        )

    def serves(self, scope: Scope) -> bool:
        if self.files is None or self.root is None or scope["method"] not in ("GET", "HEAD"):
            return False
        path: str = scope["path"]
        if path.startswith(API_PREFIXES):
            return False
        if path == "/":
            return True
        candidate = (self.root / path.lstrip("/")).resolve()
        return candidate.is_relative_to(self.root) and candidate.is_file()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.serves(scope):
            assert self.files is not None
            await self.files(scope, receive, send)
        else:
            await self.proxy(scope, receive, send)
