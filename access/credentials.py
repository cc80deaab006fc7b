"""Where a request carries its key: `Authorization: Bearer <key>` (OpenAI's clients) or
`xi-api-key: <key>` (ElevenLabs'), on HTTP requests and WebSocket handshakes alike; for a
WebSocket also a single-use token in the query (`?single_use_token=`), for browsers, which
cannot set headers on a socket (see socket_tokens.py)."""

from __future__ import annotations

from urllib.parse import unquote_plus

from starlette.types import Scope

KEY_HEADERS = (b"authorization", b"xi-api-key")
TOKEN_PARAMETER = "single_use_token"


def presented_key(scope: Scope) -> str | None:
    """The key in the request's headers (Authorization first), None when there is none."""
    headers: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.lower(), value)
    authorization = headers.get(b"authorization")
    if authorization is not None:
        scheme, _, key = authorization.decode("latin-1").strip().partition(" ")
        return (key.strip() or None) if scheme.lower() == "bearer" else None
    key_header = headers.get(b"xi-api-key")
    if key_header is not None:
        return key_header.decode("latin-1").strip() or None
    return None


def take_socket_token(scope: Scope) -> tuple[str | None, Scope]:
    """The token in a WebSocket's query, and the scope without it (the rest of the query byte
    for byte): the route, or the worker behind a balancer, never sees it."""
    query: bytes = scope.get("query_string", b"")
    name = TOKEN_PARAMETER.encode()
    if name not in query:
        return None, scope
    token, kept = None, []
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == name:
            token = token or unquote_plus(value.decode("latin-1"))
        else:
            kept.append(part)
    return token or None, {**scope, "query_string": b"&".join(kept)}
