"""The httpx clients that talk to workers, configured for many long-lived streams.

httpx's defaults break a streaming proxy (docs/facts.md): `Limits(max_connections=100)`
makes the 101st concurrent stream wait and then fail with `PoolTimeout`, and `Timeout(5.0)`
turns any 5 s silence between events into a `ReadTimeout`.

Streams are spread over several clients (connection pools) rather than one: httpcore's pool
walks every connection it holds each time a request starts or ends (and its idle check is
quadratic), so one pool with 500 open streams spent milliseconds per stream start and
saturated the balancer's core in the benchmark. Small pools keep that walk short.
"""

from __future__ import annotations

import importlib.util
import itertools
import ssl
import sys

import httpcore
import httpx

from balancer.config import BalancerConfig
from balancer.network import AsyncioBackend

# No ceiling on connections: each stream holds one for its whole life, and the workers'
# own admission control (503 when full) is the real limit.
MAX_CONNECTIONS = None
CLIENT_SHARDS = 32
MAX_KEEPALIVE_CONNECTIONS = 1024  # across all shards
# Below uvicorn's 5 s keep-alive timeout, so we never reuse a connection the worker is closing
# (the request would fail before reaching it).
KEEPALIVE_EXPIRY_S = 4.0
WRITE_TIMEOUT_S = 30.0  # a 16 MiB upload to a worker on the same network
POOL_TIMEOUT_S = 5.0
# httpx adds these to every request when the client did not send them; a proxy forwards what
# the client sent and nothing else (an unasked-for gzip would change the bytes relayed).
HTTPX_DEFAULT_HEADERS = ("accept", "accept-encoding", "user-agent")


def settle_missing_sniffio() -> None:
    """httpcore imports `sniffio` each time it makes a lock or an event, to learn which async
    library runs it, and falls back to asyncio when that fails. Without sniffio installed every
    attempt searches sys.path again (a tenth of the CPU while streams start); a None entry in
    sys.modules makes the import fail at once. Nothing changes when sniffio is installed."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


class UpstreamClients:
    """A few httpx clients used in turn: one request's connection stays in one of them."""

    def __init__(self, config: BalancerConfig, shards: int = CLIENT_SHARDS):
        settle_missing_sniffio()
        # One TLS context for all (building one loads the CA bundle: ~15 ms each).
        tls = httpx.create_ssl_context()
        self.clients = [proxy_client(config, shards, tls) for _ in range(shards)]
        self._turns = itertools.cycle(self.clients)

    def next(self) -> httpx.AsyncClient:
        return next(self._turns)

    @property
    def is_closed(self) -> bool:
        return all(c.is_closed for c in self.clients)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


def proxy_client(
    config: BalancerConfig, shards: int = 1, tls: ssl.SSLContext | None = None
) -> httpx.AsyncClient:
    timeout = httpx.Timeout(
        connect=config.connect_timeout,
        read=config.read_timeout,
        write=WRITE_TIMEOUT_S,
        pool=POOL_TIMEOUT_S,
    )
    limits = httpx.Limits(
        max_connections=MAX_CONNECTIONS,
        max_keepalive_connections=max(1, MAX_KEEPALIVE_CONNECTIONS // shards),
        keepalive_expiry=KEEPALIVE_EXPIRY_S,
    )
    # trust_env=False: an HTTP_PROXY meant for the outside world must not capture worker traffic.
    client = httpx.AsyncClient(
        timeout=timeout, transport=asyncio_transport(limits, tls), trust_env=False
    )
    for name in HTTPX_DEFAULT_HEADERS:
        del client.headers[name]
    return client


def health_client(config: BalancerConfig) -> httpx.AsyncClient:
    # Checks are short: a worker that cannot answer /health within the timeout counts as down.
    limits = httpx.Limits(max_connections=None, keepalive_expiry=KEEPALIVE_EXPIRY_S)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(config.health_timeout),
        transport=asyncio_transport(limits, None),
        trust_env=False,
    )


def asyncio_transport(limits: httpx.Limits, tls: ssl.SSLContext | None) -> httpx.AsyncHTTPTransport:
    """httpx's own transport, over httpcore's pool with the plain-asyncio backend."""
    tls = tls or httpx.create_ssl_context()
    transport = httpx.AsyncHTTPTransport(verify=tls, limits=limits, trust_env=False)
    # httpx does not take a network backend; its transport is a thin layer over this pool
    # (request and exception mapping), so the pool is swapped for an identical one.
    assert isinstance(transport._pool, httpcore.AsyncConnectionPool)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=tls,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=False,
        network_backend=AsyncioBackend(),
    )
    return transport
