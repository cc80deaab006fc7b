"""The httpx clients that talk to workers, configured for many long-lived streams.

httpx's defaults break a streaming proxy (FACTS.md section 5): `Limits(max_connections=100)`
makes the 101st concurrent stream wait and then fail with `PoolTimeout`, and `Timeout(5.0)`
turns any 5 s silence between events into a `ReadTimeout`.
"""

from __future__ import annotations

import httpx

from balancer.config import BalancerConfig

# No ceiling on connections: each stream holds one for its whole life, and the workers'
# own admission control (503 when full) is the real limit.
MAX_CONNECTIONS = None
MAX_KEEPALIVE_CONNECTIONS = 1024
# Below uvicorn's 5 s keep-alive timeout, so we never reuse a connection the worker is closing
# (the request would fail before reaching it).
KEEPALIVE_EXPIRY_S = 4.0
WRITE_TIMEOUT_S = 30.0  # a 16 MiB upload to a worker on the same network
POOL_TIMEOUT_S = 5.0
# httpx adds these to every request when the client did not send them; a proxy forwards what
# the client sent and nothing else (an unasked-for gzip would change the bytes relayed).
HTTPX_DEFAULT_HEADERS = ("accept", "accept-encoding", "user-agent")


def proxy_client(config: BalancerConfig) -> httpx.AsyncClient:
    timeout = httpx.Timeout(
        connect=config.connect_timeout,
        read=config.read_timeout,
        write=WRITE_TIMEOUT_S,
        pool=POOL_TIMEOUT_S,
    )
    limits = httpx.Limits(
        max_connections=MAX_CONNECTIONS,
        max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS,
        keepalive_expiry=KEEPALIVE_EXPIRY_S,
    )
    # trust_env=False: an HTTP_PROXY meant for the outside world must not capture worker traffic.
    client = httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False)
    for name in HTTPX_DEFAULT_HEADERS:
        del client.headers[name]
    return client


def health_client(config: BalancerConfig) -> httpx.AsyncClient:
    # Checks are short: a worker that cannot answer /health within the timeout counts as down.
    return httpx.AsyncClient(
        timeout=httpx.Timeout(config.health_timeout),
        limits=httpx.Limits(max_connections=None, keepalive_expiry=KEEPALIVE_EXPIRY_S),
        trust_env=False,
    )
