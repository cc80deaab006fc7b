"""`GET /metrics`: Prometheus text from the same counters as /stats, one registry per app."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from balancer.app import create_app
from tests.balancer.conftest import stream
from tests.balancer.processes import TEST_CONFIG, FakeWorker, live_balancer


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_per_worker(fast: list[FakeWorker]) -> None:
    with live_balancer([fast[0].url]) as lb:
        stream(lb.url)
        stream(lb.url)
        response = httpx.get(f"{lb.url}/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    worker = (("worker", fast[0].url),)
    assert found[("balancer_requests_total", ())] == 2
    assert found[("balancer_completed_total", ())] == 2
    assert found[("balancer_worker_requests_total", worker)] == 2
    assert found[("balancer_worker_in_flight", worker)] == 0
    assert found[("balancer_worker_capacity", worker)] == 4
    assert found[("balancer_worker_up", worker)] == 1
    assert found[("balancer_worker_breaker_open", worker)] == 0
    assert found[("balancer_worker_time_to_first_chunk_seconds_count", worker)] == 2
    inf = (("le", "+Inf"), ("worker", fast[0].url))
    assert found[("balancer_worker_time_to_first_chunk_seconds_bucket", inf)] == 2


def test_each_app_has_its_own_registry() -> None:
    from dataclasses import replace

    config = replace(TEST_CONFIG, workers=("http://127.0.0.1:9",))
    first, second = create_app(config), create_app(config)
    first.balancer.totals.requests += 3
    assert b"balancer_requests_total 3.0" in first.balancer.metrics.render()
    assert b"balancer_requests_total 0.0" in second.balancer.metrics.render()
