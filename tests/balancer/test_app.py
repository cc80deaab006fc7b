"""The app's wiring: its own /health, the first health check before serving, and
`python -m balancer` as a process."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx

from tests.balancer.processes import FakeWorker, free_port, live_balancer, wait_for


def test_balancer_health_follows_its_workers(fast: list[FakeWorker]) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    with live_balancer([w.url for w in fast]) as lb:
        health = httpx.get(f"{lb.url}/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
    with live_balancer([fast[0].url, nowhere]) as lb:
        body = httpx.get(f"{lb.url}/health").json()
        assert body["status"] == "degraded" and body["ready_workers"] == 1
    with live_balancer([nowhere]) as lb:
        health = httpx.get(f"{lb.url}/health")
        assert health.status_code == 503 and health.json()["status"] == "unavailable"


def test_workers_are_checked_before_the_first_request(fast: list[FakeWorker]) -> None:
    with live_balancer([fast[0].url], health_interval=60) as lb:
        assert lb.worker_stats(fast[0].url)["health"] == "ready"


def test_shutdown_closes_the_upstream_clients(fast: list[FakeWorker]) -> None:
    with live_balancer([fast[0].url]) as lb:
        clients = lb.state.proxy.clients
        assert not clients.is_closed
    assert clients.is_closed


def test_python_m_balancer_serves_and_stops_on_sigterm(fast: list[FakeWorker]) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "balancer", "--workers", fast[0].url, "--port", str(port)]
    process = subprocess.Popen(
        [*argv, "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:

        def healthy() -> bool:
            assert process.poll() is None, "the balancer exited"
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 30, "the balancer")
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down cleanly, then re-raises the signal it caught.
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
        assert process.stderr is not None
        log = process.stderr.read().decode()
    assert "balancing 1 worker(s) with least-loaded" in log
