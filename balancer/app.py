"""The balancer's ASGI application: its own endpoints, then the frontend or the proxy."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from balancer.breaker import CircuitBreaker
from balancer.config import BalancerConfig
from balancer.counters import TotalCounters
from balancer.health import HealthChecker
from balancer.metrics import BalancerMetrics
from balancer.policies import make_policy
from balancer.pool import WorkerPool
from balancer.proxy import Proxy
from balancer.static import FrontendOrProxy
from balancer.stats import StatsView
from balancer.upstream import UpstreamClients, health_client
from balancer.voices import VoiceBroadcast, is_voice_change
from balancer.websocket import SocketProxy


@dataclass
class Balancer:
    """Everything one balancer app holds, reachable from tests as `app.balancer`."""

    config: BalancerConfig
    pool: WorkerPool
    totals: TotalCounters
    proxy: Proxy
    sockets: SocketProxy
    checker: HealthChecker
    stats: StatsView
    metrics: BalancerMetrics


OWN_PATHS = frozenset({"/stats", "/metrics", "/health"})


class BalancerApp:
    """The balancer's own endpoints go through Starlette; everything else goes straight to the
    frontend-or-proxy dispatcher, or for WebSockets (the balancer has none of its own) to the
    socket proxy. Starlette's middleware wraps every `send`, which cost about 7% of the CPU per
    relayed event, for error pages the proxy makes itself anyway."""

    def __init__(self, ops: Starlette, front: FrontendOrProxy, balancer: Balancer):
        self.ops = ops
        self.front = front
        self.balancer = balancer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OWN_PATHS:
            await self.front(scope, receive, send)
        elif scope["type"] == "websocket":
            await self.balancer.sockets(scope, receive, send)
        else:  # lifespan, and our own endpoints
            await self.ops(scope, receive, send)


def create_app(config: BalancerConfig) -> BalancerApp:
    pool = WorkerPool(
        config.workers,
        make_policy(config.policy),
        lambda: CircuitBreaker(config.breaker_failures, config.breaker_cooldown),
    )
    totals = TotalCounters()
    clients = UpstreamClients(config)
    checks = health_client(config)
    broadcast = None
    if config.voice_broadcast:
        broadcast = (is_voice_change, VoiceBroadcast(pool, clients, totals, config.retry_after))
    proxy = Proxy(
        pool,
        clients,
        totals,
        max_attempts=config.max_attempts,
        max_body_bytes=config.max_body_bytes,
        retry_after=config.retry_after,
        stream_idle_timeout=config.stream_idle_timeout,
        broadcast=broadcast,
    )
    stats = StatsView(pool, totals, config.policy)
    balancer = Balancer(
        config=config,
        pool=pool,
        totals=totals,
        proxy=proxy,
        sockets=SocketProxy(
            pool,
            totals,
            max_attempts=config.max_attempts,
            retry_after=config.retry_after,
            handshake_timeout=config.ws_handshake_timeout,
            max_message_bytes=config.ws_max_message_bytes,
        ),
        checker=HealthChecker(pool, checks, config.health_interval),
        stats=stats,
        metrics=BalancerMetrics(pool, totals, time.time()),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # One round of checks before serving, so the first requests already know who is up.
        await balancer.checker.check_all()
        balancer.checker.start()
        try:
            yield
        finally:
            await balancer.checker.stop()
            await clients.aclose()
            await checks.aclose()

    ops = Starlette(
        routes=[
            Route("/stats", stats.stats_endpoint, methods=["GET"]),
            Route("/metrics", balancer.metrics.endpoint, methods=["GET"]),
            Route("/health", stats.health_endpoint, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    return BalancerApp(ops, FrontendOrProxy(config.static_dir, proxy), balancer)
