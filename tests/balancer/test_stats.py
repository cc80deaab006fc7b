"""`GET /stats`: JSON for scripts, the live dashboard for browsers, reflecting the traffic."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx

from balancer.breaker import CircuitBreaker
from balancer.counters import TotalCounters
from balancer.dashboard import dashboard_html
from balancer.policies import LeastLoaded
from balancer.pool import Health, WorkerPool
from balancer.stats import StatsView
from tests.balancer.clients import STREAM_LIMITS, stream_events, wait_in_flight
from tests.balancer.conftest import stream
from tests.balancer.processes import FakeWorker, live_balancer


def test_stats_reflect_the_traffic(fast: list[FakeWorker]) -> None:
    with live_balancer([w.url for w in fast]) as lb:
        for _ in range(4):
            stream(lb.url)

        async def hang_up() -> None:
            async with httpx.AsyncClient(timeout=30, limits=STREAM_LIMITS) as client:
                await stream_events(client, lb.url, hang_up_after=1)

        asyncio.run(hang_up())
        lb.wait_in_flight(0)
        stats = lb.stats()
    balancer, totals = stats["balancer"], stats["totals"]
    assert balancer["workers"] == balancer["workers_in_rotation"] == 2
    assert balancer["capacity"] == 8 and balancer["in_flight"] == 0
    assert balancer["policy"] == "least-loaded" and balancer["uptime_s"] >= 0
    assert totals["requests"] == 5 and totals["completed"] == 4
    assert totals["client_disconnects"] == 1 and totals["failovers"] == 0
    for worker in stats["workers"]:
        assert worker["health"] == "ready" and worker["breaker"] == "closed"
        assert worker["capacity"] == 4 and worker["in_flight"] == 0
        assert 0 < worker["ttfc_p50_s"] <= worker["ttfc_p95_s"] < 5
        assert worker["last_health_check_age_s"] < 5
        assert abs(worker["last_health_check"] - time.time()) < 5
        assert worker["worker_reported"]["model"] == "fake"
        assert worker["errors"] == worker["failovers"] == worker["lost_mid_stream"] == 0
    assert sum(w["requests"] for w in stats["workers"]) == 5
    assert sum(w["ttfc_samples"] for w in stats["workers"]) == 5


def test_stats_show_streams_in_flight(slow: list[FakeWorker]) -> None:
    with live_balancer([w.url for w in slow]) as lb:

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=30, limits=STREAM_LIMITS) as client:
                task = asyncio.create_task(stream_events(client, lb.url))
                counts = await wait_in_flight(client, lb.url, 1)
                stats = (await client.get(f"{lb.url}/stats")).json()
                assert stats["balancer"]["in_flight"] == 1
                assert sorted(counts.values()) == [0, 1]
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await wait_in_flight(client, lb.url, 0)

        asyncio.run(scenario())


def test_browsers_get_a_dashboard_that_refreshes_itself(fast: list[FakeWorker]) -> None:
    browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    with live_balancer([w.url for w in fast]) as lb:
        page = httpx.get(f"{lb.url}/stats", headers={"accept": browser_accept})
        assert page.headers["content-type"].startswith("text/html")
        html = page.text
        assert "<table" in html and "setInterval(poll" in html
        assert 'fetch("stats?format=json"' in html
        embedded = re.search(r'<script id="initial" type="application/json">(.*?)</script>', html)
        assert embedded is not None
        snapshot = json.loads(embedded.group(1))
        assert [w["url"] for w in snapshot["workers"]] == [w.url for w in fast]
        forced = httpx.get(f"{lb.url}/stats?format=json", headers={"accept": browser_accept})
        assert forced.headers["content-type"] == "application/json"
        assert httpx.get(f"{lb.url}/stats?format=html").text.startswith("<!doctype html>")
        assert httpx.get(f"{lb.url}/stats", headers={"accept": "*/*"}).json()["workers"]


def test_the_dashboard_cannot_be_broken_out_of() -> None:
    html = dashboard_html({"workers": [{"url": "</script><script>alert(1)</script>"}]})
    assert "</script><script>alert(1)" not in html


def test_a_retiring_worker_is_shown_as_such_and_leaves_the_capacity() -> None:
    pool = WorkerPool(["http://a", "http://b"], LeastLoaded(), lambda: CircuitBreaker(1, 5.0))
    for worker in pool:
        worker.health, worker.capacity = Health.READY, 4
    lease = pool.route()
    assert lease is not None
    pool.retire(lease.worker.url)
    view = StatsView(pool, TotalCounters(), "least-loaded")
    snapshot = view.snapshot()
    retiring, staying = snapshot["workers"]
    assert retiring["retiring"] and not retiring["in_rotation"] and retiring["in_flight"] == 1
    assert not staying["retiring"] and staying["in_rotation"]
    balancer = snapshot["balancer"]
    assert balancer["workers"] == 2 and balancer["workers_retiring"] == 1
    assert balancer["workers_in_rotation"] == 1 and balancer["capacity"] == 4
    code, health = view.health()  # every worker still listed is ready
    assert code == 200 and health["status"] == "ok" and health["workers"] == 1
    assert "retiring" in dashboard_html(snapshot)
    lease.release()
