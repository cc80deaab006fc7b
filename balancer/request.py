"""A client request as the balancer holds it: read whole, so it can be replayed on failover.

Bodies are buffered before routing (up to `max_body_bytes`: audio prompts are up to ~10 MB) and
forwarded byte for byte with the client's headers, minus the hop-by-hop ones, which describe
the client's connection and not the request.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from starlette.types import Receive, Scope

# RFC 9110 section 7.6.1, plus what the upstream connection sets for itself: Host (the
# worker's), Content-Length (of the buffered body) and Expect (the body is already here).
REQUEST_HOP_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"expect",
    }
)
# X-Forwarded-Proto of a WebSocket handshake: proxies give the HTTP scheme it came over.
HTTP_SCHEMES = {"ws": "http", "wss": "https"}


class ClientGone(Exception):
    """The client disconnected while sending its request."""


class BodyTooLarge(Exception):
    pass


def connection_tokens(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    """Header names listed in Connection, which are hop-by-hop too."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    return tokens


@dataclass(frozen=True)
class UpstreamRequest:
    method: str
    path: str
    target: bytes  # raw path and query, exactly as the client sent them
    headers: list[tuple[bytes, bytes]]
    body: bytes

    @classmethod
    def from_scope(cls, scope: Scope, body: bytes) -> UpstreamRequest:
        path: str = scope["path"]
        return cls(scope["method"], path, raw_target(scope), forwarded_headers(scope), body)

    def to(self, client: httpx.AsyncClient, base: httpx.URL) -> httpx.Request:
        return client.build_request(
            self.method,
            base.copy_with(raw_path=self.target),
            headers=self.headers,
            content=self.body,
        )


def forwarded_headers(
    scope: Scope, drop: frozenset[bytes] = REQUEST_HOP_HEADERS
) -> list[tuple[bytes, bytes]]:
    """The client's headers for the worker: less `drop` and the ones Connection names, plus
    X-Forwarded-For/-Host/-Proto (WebSocket schemes given as http/https, as proxies do)."""
    raw: list[tuple[bytes, bytes]] = list(scope["headers"])
    drop = drop | connection_tokens(raw)
    headers = [(k, v) for k, v in raw if k.lower() not in drop]
    client = scope.get("client")
    forwarded_for = [v for k, v in raw if k.lower() == b"x-forwarded-for"]
    if client:
        chain = b", ".join([*forwarded_for, client[0].encode()])
        headers = [(k, v) for k, v in headers if k.lower() != b"x-forwarded-for"]
        headers.append((b"x-forwarded-for", chain))
    host = next((v for k, v in raw if k.lower() == b"host"), None)
    if host is not None:
        headers.append((b"x-forwarded-host", host))
    scheme: str = scope.get("scheme", "http")
    headers.append((b"x-forwarded-proto", HTTP_SCHEMES.get(scheme, scheme).encode()))
    return headers


def raw_target(scope: Scope) -> bytes:
    """The raw path and query, exactly as the client sent them."""
    path: str = scope["path"]
    target: bytes = scope.get("raw_path") or path.encode()
    if scope.get("query_string"):
        target += b"?" + scope["query_string"]
    return target


def ambiguous_framing(scope: Scope) -> str | None:
    """Why the request's length could be read two ways, if it could (None: it cannot).

    uvicorn's parser (h11) already refuses conflicting Content-Lengths and any
    Transfer-Encoding but `chunked`; with both headers it goes by Transfer-Encoding, as RFC 9112
    section 6.1 allows, but a proxy in front of us that goes by Content-Length would see other
    requests in the same bytes: one of them smuggled past it. So that is refused, the
    connection closed (which the RFC requires), as is chunked framing in HTTP/1.0, which has
    none."""
    names = {name.lower() for name, _ in scope["headers"]}
    if b"transfer-encoding" not in names:
        return None
    if b"content-length" in names:
        return "both Content-Length and Transfer-Encoding: the request's length is ambiguous"
    if scope.get("http_version") == "1.0":
        return "Transfer-Encoding in an HTTP/1.0 request: the request's length is ambiguous"
    return None


def declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; `BodyTooLarge` past `limit`, `ClientGone` if the client left."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)
