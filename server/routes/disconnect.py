"""Noticing that an HTTP client went away while its plain (non-streamed) response is made."""

from __future__ import annotations

from starlette.requests import Request


async def client_gone(request: Request) -> None:
    """Returns once the client has disconnected (the request body is already read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
