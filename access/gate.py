"""The door: ASGI middleware that lets in only requests with the right key.

A `Gatekeeper` holds one process's keys, WebSocket tokens, per-key stream limits and
counters; `guard(app)` wraps an ASGI app with a `KeyGate` that sends every HTTP request and
WebSocket handshake through it (lifespan passes untouched). The worker guards its whole app;
the balancer its proxy, its socket proxy and its own endpoints, but not the web app's files,
which must load before anyone has pasted a key. The gate itself answers
`POST /v1/auth/ws-token` (see socket_tokens.py).

A stream holds its key's slot for as long as the wrapped app runs, which for a streamed
response or a socket is until it ends, whichever way: the slot is released in a `finally`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from access import refusals
from access.credentials import TOKEN_PARAMETER, presented_key, take_socket_token
from access.identity import current_key
from access.key_file import load_key_file
from access.keys import ApiKey, KeyRing
from access.refusals import Refusal, send_json, send_refusal
from access.rules import TOKEN_PATH, need
from access.socket_tokens import SocketTokens, TooManyTokens
from access.streams import StreamLimits
from access.usage import AccessCounters

logger = logging.getLogger("access")


class Gatekeeper:
    def __init__(
        self,
        keys: KeyRing,
        *,
        default_max_streams: int | None,
        retry_after: int,
        restrict_ops: bool,
        tokens: SocketTokens | None = None,
    ):
        self.keys = keys
        self.limits = StreamLimits(default_max_streams)
        self.retry_after = retry_after
        self.restrict_ops = restrict_ops
        self.tokens = tokens if tokens is not None else SocketTokens()
        self.counters = AccessCounters()
        for key in keys:  # every key on /stats from the start, used or not
            self.counters.of(key.name)

    @classmethod
    def from_file(
        cls, path: Path, *, default_max_streams: int, retry_after: int, restrict_ops: bool
    ) -> Gatekeeper:
        """From a keys file (`KeyFileError` when it cannot be used); a default limit of 0
        means none."""
        return cls(
            load_key_file(path),
            default_max_streams=default_max_streams or None,
            retry_after=retry_after,
            restrict_ops=restrict_ops,
        )

    def guard(self, app: ASGIApp) -> KeyGate:
        return KeyGate(app, self)

    def identify(self, scope: Scope) -> tuple[ApiKey | Refusal, Scope]:
        """The request's key or why it has none, and its scope (a socket's token taken out)."""
        token = None
        if scope["type"] == "websocket":
            token, scope = take_socket_token(scope)
        presented = presented_key(scope)
        if presented is not None:
            return self.keys.find(presented) or refusals.unknown_key(), scope
        if token is not None:
            return self.tokens.redeem(token) or refusals.spent_token(), scope
        return refusals.missing_key(), scope

    def snapshot(self) -> dict[str, Any]:
        """Per key, by name: for `/stats`."""
        limits = {key.name: self.limits.limit(key) for key in self.keys}
        return {
            "unauthorized": self.counters.unauthorized,
            "keys": {
                name: {**vars(usage), "max_streams": limits.get(name)}
                for name, usage in self.counters.keys.items()
            },
        }


class KeyGate:
    def __init__(self, app: ASGIApp, gatekeeper: Gatekeeper):
        self.app = app
        self.gatekeeper = gatekeeper

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        websocket = scope["type"] == "websocket"
        if not websocket and scope["path"] == TOKEN_PATH:
            await self._mint(scope, receive, send)
            return
        gatekeeper = self.gatekeeper
        method = "GET" if websocket else scope["method"]
        required = need(
            method, scope["path"], websocket=websocket, restrict_ops=gatekeeper.restrict_ops
        )
        if required.role is None:
            await self.app(scope, receive, send)
            return
        key, scope = gatekeeper.identify(scope)
        if isinstance(key, Refusal):
            gatekeeper.counters.unauthorized += 1
            _log_refusal(scope, key, None)
            await send_refusal(scope, receive, send, key)
            return
        usage = gatekeeper.counters.of(key.name)
        if not key.role.allows(required.role):
            usage.forbidden += 1
            await self._refuse(scope, receive, send, refusals.forbidden(key, required.role), key)
            return
        slot = None
        if required.stream:
            slot = gatekeeper.limits.take(key, usage)
            if slot is None:
                usage.over_limit += 1
                limit = gatekeeper.limits.limit(key) or 0
                refusal = refusals.over_limit(key, limit, gatekeeper.retry_after)
                await self._refuse(scope, receive, send, refusal, key)
                return
        usage.requests += 1
        reset = current_key.set(key.name)
        try:
            await self.app(scope, receive, send)
        finally:
            if slot is not None:
                slot.release()
            current_key.reset(reset)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, refusal: Refusal, key: ApiKey
    ) -> None:
        _log_refusal(scope, refusal, key)
        await send_refusal(scope, receive, send, refusal)

    async def _mint(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`POST /v1/auth/ws-token` with a key in a header: a single-use socket token."""
        gatekeeper = self.gatekeeper
        if scope["method"] != "POST":
            await send_json(send, 405, {"error": f"use POST {TOKEN_PATH}"})
            return
        presented = presented_key(scope)
        key = gatekeeper.keys.find(presented) if presented is not None else None
        if key is None:
            gatekeeper.counters.unauthorized += 1
            refusal = refusals.missing_key() if presented is None else refusals.unknown_key()
            _log_refusal(scope, refusal, None)
            await send_refusal(scope, receive, send, refusal)
            return
        try:
            token = gatekeeper.tokens.mint(key)
        except TooManyTokens:
            refusal = refusals.too_many_tokens(gatekeeper.retry_after)
            await self._refuse(scope, receive, send, refusal, key)
            return
        gatekeeper.counters.of(key.name).tokens += 1
        payload = {
            "token": token,
            "expires_in": gatekeeper.tokens.ttl,
            "parameter": TOKEN_PARAMETER,
        }
        await send_json(send, 200, payload)


def _log_refusal(scope: Scope, refusal: Refusal, key: ApiKey | None) -> None:
    client = scope.get("client")
    method = "WebSocket" if scope["type"] == "websocket" else scope["method"]
    logger.info(
        "%d %s %s from %s%s: %s",
        refusal.status,
        method,
        scope["path"],
        client[0] if client else "?",
        f" (key {key.name!r})" if key is not None else "",
        refusal.message,
    )
