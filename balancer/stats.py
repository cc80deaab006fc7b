"""`GET /stats` (JSON, or the live HTML dashboard for browsers) and `GET /health`."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from access.gate import Gatekeeper
from balancer.counters import TotalCounters
from balancer.dashboard import dashboard_html
from balancer.pool import Health, Worker, WorkerPool


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


class StatsView:
    def __init__(
        self,
        pool: WorkerPool,
        totals: TotalCounters,
        policy: str,
        gatekeeper: Gatekeeper | None = None,
    ):
        self.pool = pool
        self.totals = totals
        self.policy = policy
        self.gatekeeper = gatekeeper
        self.started = time.time()

    def worker(self, worker: Worker, now: float, wall: float) -> dict[str, Any]:
        c = worker.counters
        reported = worker.reported
        return {
            "url": worker.url,
            "health": worker.health.value,
            # No longer discovered: takes no new requests, leaves once its running ones end.
            "retiring": worker.retiring,
            "breaker": worker.breaker_state(now).value,
            "in_rotation": worker.available(now),
            "in_flight": worker.in_flight,
            "capacity": worker.capacity,
            "load": round(worker.load, 4),
            "requests": c.requests,
            "completed": c.completed,
            "errors": c.errors,
            "rejected": c.rejected,
            "failovers": c.failovers,
            "lost_mid_stream": c.lost,
            "client_disconnects": c.client_disconnects,
            "sockets": asdict(c.sockets),
            "ttfc_p50_s": _seconds(c.ttfc.percentile(50)),
            "ttfc_p95_s": _seconds(c.ttfc.percentile(95)),
            "ttfc_samples": c.ttfc.count,
            "last_health_check": worker.last_check,
            "last_health_check_age_s": None
            if worker.last_check is None
            else round(wall - worker.last_check, 2),
            "last_error": worker.last_error,
            "worker_reported": {
                k: reported[k]
                for k in (
                    "model",
                    "device",
                    "languages",
                    "active_streams",
                    "queued",
                    "max_queue",
                    "uptime_s",
                )
                if k in reported
            },
        }

    def snapshot(self) -> dict[str, Any]:
        now, wall = self.pool.clock(), time.time()
        workers = [self.worker(w, now, wall) for w in self.pool]
        return {
            "balancer": {
                "uptime_s": round(wall - self.started, 1),
                "started_at": self.started,
                "policy": self.policy,
                "workers": len(workers),
                "workers_in_rotation": sum(w["in_rotation"] for w in workers),
                "workers_retiring": sum(w["retiring"] for w in workers),
                "in_flight": self.pool.in_flight,  # WebSockets included: each holds a lease
                "open_sockets": self.totals.sockets.open,
                "capacity": sum(
                    w.capacity for w in self.pool if w.health is Health.READY and not w.retiring
                ),
            },
            "totals": asdict(self.totals),
            "workers": workers,
            # Per key, by name (never the key): requests, streams open, refusals.
            "access": None if self.gatekeeper is None else self.gatekeeper.snapshot(),
        }

    def health(self) -> tuple[int, dict[str, Any]]:
        """Ready while at least one worker is: an outer load balancer can skip us otherwise."""
        now = self.pool.clock()
        available = [w for w in self.pool if w.available(now)]
        ready = len(available)
        listed = sum(not w.retiring for w in self.pool)  # retiring ones are on their way out
        status = "ok" if ready == listed else "degraded" if ready else "unavailable"
        body = {
            "status": status,
            "ready_workers": ready,
            "workers": listed,
            "in_flight": self.pool.in_flight,
            "uptime_s": round(time.time() - self.started, 1),
        }
        languages = common_languages(available)
        if languages is not None:
            body["languages"] = languages
        return (200 if ready else 503), body

    async def stats_endpoint(self, request: Request) -> Response:
        if wants_html(request):
            return HTMLResponse(dashboard_html(self.snapshot()))
        return JSONResponse(self.snapshot(), headers={"Cache-Control": "no-store"})

    async def health_endpoint(self, request: Request) -> Response:
        status, body = self.health()
        return JSONResponse(body, status_code=status)


def common_languages(workers: list[Worker]) -> list[str] | None:
    """The languages every given worker speaks (any of them may get the next request), in the
    first one's order; None when none reports its languages."""
    reported = [w.reported.get("languages") for w in workers]
    lists = [list(r) for r in reported if isinstance(r, list)]
    if not lists:
        return None
    return [code for code in lists[0] if all(code in other for other in lists[1:])]


def wants_html(request: Request) -> bool:
    """Browsers ask for text/html first; scripts and curl get JSON (`?format=` overrides)."""
    fmt = request.query_params.get("format")
    if fmt in ("json", "html"):
        return fmt == "html"
    accept = request.headers.get("accept", "").lower()
    html, json_ = accept.find("text/html"), accept.find("application/json")
    return html >= 0 and (json_ < 0 or html < json_)
