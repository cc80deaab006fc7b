"""The balancer's ASGI application: its own endpoints, then the frontend or the proxy."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from access.gate import Gatekeeper
from access.key_file import load_key_file
from access.keys import ApiKey, KeyRing, Role, digest
from balancer.breaker import CircuitBreaker
from balancer.config import SUPERVISOR_KEY_NAME, BalancerConfig
from balancer.counters import TotalCounters
from balancer.discovery import Discovery, sources_from
from balancer.health import HealthChecker
from balancer.metrics import BalancerMetrics
from balancer.policies import make_policy
from balancer.pool import WorkerPool
from balancer.proxy import Proxy
from balancer.replies import send_json
from balancer.request import ambiguous_framing
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
    discovery: Discovery
    gatekeeper: Gatekeeper | None = None  # None: no keys file, open


OWN_PATHS = frozenset({"/stats", "/metrics", "/health"})


class BalancerApp:
    """The balancer's own endpoints go through Starlette; everything else goes straight to the
    frontend-or-proxy dispatcher, or for WebSockets (the balancer has none of its own) to the
    socket proxy. Starlette's middleware wraps every `send`, which cost about 7% of the CPU per
    relayed event, for error pages the proxy makes itself anyway."""

    def __init__(self, ops: ASGIApp, front: FrontendOrProxy, balancer: Balancer, sockets: ASGIApp):
        self.ops = ops
        self.front = front
        self.balancer = balancer
        self.sockets = sockets  # the socket proxy, behind the key gate when there is one

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (problem := ambiguous_framing(scope)):
            headers = {"Connection": "close"}  # the rest of the bytes are not read as requests
            await send_json(send, 400, {"error": problem, "field": "transfer-encoding"}, headers)
            return
        if scope["type"] == "http" and scope["path"] not in OWN_PATHS:
            await self.front(scope, receive, send)
        elif scope["type"] == "websocket":
            await self.sockets(scope, receive, send)
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
    gatekeeper = keys_from(config)  # KeyFileError when the file cannot be used
    stats = StatsView(pool, totals, config.policy, gatekeeper)
    checker = HealthChecker(pool, checks, config.health_interval)
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
        checker=checker,
        stats=stats,
        metrics=BalancerMetrics(pool, totals, time.time()),
        discovery=Discovery(pool, sources_from(config), config.discovery_interval, checker.check),
        gatekeeper=gatekeeper,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The workers listed now, and one round of checks, before serving: the first requests
        # already know who is up.
        await balancer.discovery.refresh()
        await balancer.checker.check_all()
        balancer.checker.start()
        balancer.discovery.start()
        try:
            yield
        finally:
            await balancer.discovery.stop()
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

    # The web app's files stay open (the page must load before a key is pasted); the proxy, the
    # socket proxy and our own endpoints pass the gate, which also answers /v1/auth/ws-token.
    def guard(app: ASGIApp) -> ASGIApp:
        return app if gatekeeper is None else gatekeeper.guard(app)

    front = FrontendOrProxy(config.static_dir, guard(proxy))
    return BalancerApp(guard(ops), front, balancer, guard(balancer.sockets))


def keys_from(config: BalancerConfig) -> Gatekeeper | None:
    if config.api_keys_file is None:
        return None
    keys = list(load_key_file(config.api_keys_file))
    if config.supervisor_key:
        keys.append(ApiKey(SUPERVISOR_KEY_NAME, Role.ADMIN, digest(config.supervisor_key)))
    return Gatekeeper(
        KeyRing(keys),
        default_max_streams=config.key_max_streams or None,
        retry_after=config.retry_after,
        restrict_ops=config.restrict_ops,
    )
