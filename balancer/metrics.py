"""`GET /metrics`: the balancer's counters in Prometheus' text format.

One registry per app, filled at scrape time by a collector that reads the same counters as
`/stats` (no metric objects mutated from around the code base).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from balancer.breaker import BreakerState
from balancer.counters import TotalCounters
from balancer.pool import WorkerPool

WORKER_COUNTERS = {
    "requests": "Attempts routed to the worker, failed ones included",
    "completed": "Responses relayed to their end",
    "errors": "Worker failures: refused, cut off, timed out, or a 5xx other than 503",
    "rejected": "503 answers (busy or loading) before the first byte",
    "failovers": "Requests moved to another worker before their first byte",
    "lost": "Streams cut off after their first byte",
    "client_disconnects": "Clients that went away mid-request",
}
TOTAL_COUNTERS = {
    "requests": "Client requests proxied",
    "completed": "Client requests relayed to their end",
    "failovers": "Requests moved to another worker before their first byte",
    "lost": "Streams cut off by a lost worker after their first byte",
    "client_disconnects": "Clients that went away mid-request",
    "no_worker": "Requests answered 503 because no worker could take them",
    "rejected": "Requests answered with a worker's 503 (every worker tried was busy)",
    "too_large": "Requests refused for an oversized body",
}

# WebSocket sessions (counters.SocketCounters): `balancer_sockets_*` in total and
# `balancer_worker_sockets_*` per worker. Gauges are what is open now.
SOCKET_GAUGES = {
    "open": "WebSockets open now",
    "contexts_open": "Contexts open now on multi-stream WebSockets",
}
SOCKET_COUNTERS = {
    "opened": "WebSockets whose worker handshake completed",
    "refused": "WebSocket handshakes refused (per worker: upgrades the worker refused)",
    "failovers": "WebSockets moved to another worker before their handshake completed",
    "lost": "WebSockets whose worker was lost mid-socket (the client got close 1011)",
    "client_closed": "WebSockets the client closed first",
    "worker_closed": "WebSockets the worker closed (its close code passed on)",
    "contexts_opened": "Contexts opened on multi-stream WebSockets",
}


def socket_families(
    prefix: str, labels: list[str]
) -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
    families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
        name: GaugeMetricFamily(f"{prefix}_sockets_{name}", doc, labels=labels)
        for name, doc in SOCKET_GAUGES.items()
    }
    for name, doc in SOCKET_COUNTERS.items():
        families[name] = CounterMetricFamily(f"{prefix}_sockets_{name}", doc, labels=labels)
    return families


class BalancerCollector(Collector):
    def __init__(self, pool: WorkerPool, totals: TotalCounters, started: float):
        self.pool = pool
        self.totals = totals
        self.started = started

    def collect(self) -> Iterator[Metric]:
        now = self.pool.clock()
        uptime = GaugeMetricFamily("balancer_uptime_seconds", "Seconds since the balancer started")
        uptime.add_metric([], time.time() - self.started)
        yield uptime
        for name, doc in TOTAL_COUNTERS.items():
            total = CounterMetricFamily(f"balancer_{name}", doc)
            total.add_metric([], getattr(self.totals, name))
            yield total
        for name, family in socket_families("balancer", []).items():
            family.add_metric([], getattr(self.totals.sockets, name))
            yield family

        labels = ["worker"]
        gauges = {
            "in_flight": GaugeMetricFamily(
                "balancer_worker_in_flight", "Requests pinned to the worker now", labels=labels
            ),
            "capacity": GaugeMetricFamily(
                "balancer_worker_capacity", "Concurrent streams the worker runs", labels=labels
            ),
            "up": GaugeMetricFamily(
                "balancer_worker_up", "1 while the worker is in rotation", labels=labels
            ),
            "retiring": GaugeMetricFamily(
                "balancer_worker_retiring",
                "1 while the worker, no longer discovered, finishes its requests before leaving",
                labels=labels,
            ),
            "breaker_open": GaugeMetricFamily(
                "balancer_worker_breaker_open",
                "1 while the worker's breaker is open",
                labels=labels,
            ),
        }
        counters = {
            name: CounterMetricFamily(f"balancer_worker_{name}", doc, labels=labels)
            for name, doc in WORKER_COUNTERS.items()
        }
        sockets = socket_families("balancer_worker", labels)
        ttfc = HistogramMetricFamily(
            "balancer_worker_time_to_first_chunk_seconds",
            "From routing to the worker's first audio event",
            labels=labels,
        )
        for w in self.pool:
            gauges["in_flight"].add_metric([w.url], w.in_flight)
            gauges["capacity"].add_metric([w.url], w.capacity)
            gauges["up"].add_metric([w.url], float(w.available(now)))
            gauges["retiring"].add_metric([w.url], float(w.retiring))
            is_open = w.breaker_state(now) is not BreakerState.CLOSED
            gauges["breaker_open"].add_metric([w.url], float(is_open))
            for name, family in counters.items():
                family.add_metric([w.url], getattr(w.counters, name))
            for name, family in sockets.items():
                family.add_metric([w.url], getattr(w.counters.sockets, name))
            recorder = w.counters.ttfc
            ttfc.add_metric([w.url], recorder.cumulative(), recorder.sum)
        yield from gauges.values()
        yield from counters.values()
        yield from sockets.values()
        yield ttfc


class BalancerMetrics:
    def __init__(self, pool: WorkerPool, totals: TotalCounters, started: float):
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(BalancerCollector(pool, totals, started))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def endpoint(self, request: Request) -> Response:
        return Response(self.render(), media_type=CONTENT_TYPE_LATEST)
