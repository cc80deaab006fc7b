"""The circuit breaker in a running balancer: out of rotation on failures, back on answers."""

from __future__ import annotations

from pathlib import Path

from tests.balancer.conftest import stream
from tests.balancer.processes import FakeWorker, live_balancer, wait_for
from tests.balancer.upstreams import cut_off
from tests.live_server import LiveServer

SHORT = ("--chunks", "5", "--delay", "0.02")


class ManualClock:
    """The breakers' clock, moved by the test (health checks keep running in real time)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_refused_connection_takes_the_worker_out_at_once(
    fast: list[FakeWorker], logs: Path
) -> None:
    victim = FakeWorker(*SHORT, log_dir=logs).start().wait_ready()
    # No active checks during the test: only the failed request can notice the death.
    with live_balancer([victim.url, fast[0].url], health_interval=60, breaker_cooldown=60) as lb:
        victim.kill()
        for _ in range(4):
            response, events = stream(lb.url)
            assert response.headers["x-upstream-worker"] == fast[0].url
            assert events[-1].event == "done"
        stats = lb.worker_stats(victim.url)
        assert stats["health"] == "ready"  # the health checker has not looked yet
        assert stats["breaker"] == "open" and stats["in_rotation"] is False
        assert (stats["requests"], stats["errors"], stats["failovers"]) == (1, 1, 1)
        assert "ConnectError" in stats["last_error"]


def test_repeated_failures_open_the_breaker_until_the_cooldown_is_over(
    fast: list[FakeWorker],
) -> None:
    clock = ManualClock()
    # This worker answers /health but fails every stream before its first byte.
    with (
        LiveServer(cut_off(b"")) as flaky,
        live_balancer(
            [flaky.url, fast[0].url], breaker_failures=3, breaker_cooldown=5, health_interval=0.05
        ) as lb,
    ):
        lb.state.pool.clock = clock
        while lb.worker_stats(flaky.url)["requests"] < 3:
            response, events = stream(lb.url)
            assert response.status_code == 200 and events[-1].event == "done"
        stats = lb.worker_stats(flaky.url)
        assert stats["breaker"] == "open" and stats["errors"] == 3 and stats["in_rotation"] is False
        # It keeps answering health checks, but stays out until the cooldown is over.
        checked = stats["last_health_check"]
        wait_for(lambda: lb.worker_stats(flaky.url)["last_health_check"] > checked, 5, "a check")
        for _ in range(4):
            assert stream(lb.url)[0].headers["x-upstream-worker"] == fast[0].url
        assert lb.worker_stats(flaky.url)["requests"] == 3
        clock.now += 5
        wait_for(lambda: lb.worker_stats(flaky.url)["in_rotation"], 5, "re-admission")
        assert lb.worker_stats(flaky.url)["breaker"] == "closed"


def test_a_dead_worker_is_readmitted_once_it_answers_again(
    fast: list[FakeWorker], logs: Path
) -> None:
    victim = FakeWorker(*SHORT, log_dir=logs).start().wait_ready()
    with live_balancer([victim.url, fast[0].url], health_interval=0.05) as lb:
        victim.kill()
        wait_for(lambda: lb.worker_stats(victim.url)["health"] == "unreachable", 5, "the check")
        served = {stream(lb.url)[0].headers["x-upstream-worker"] for _ in range(3)}
        assert served == {fast[0].url}
        revived = FakeWorker(*SHORT, port=victim.port, log_dir=logs).start().wait_ready()
        try:
            wait_for(lambda: lb.worker_stats(victim.url)["in_rotation"], 5, "re-admission")
            served = {stream(lb.url)[0].headers["x-upstream-worker"] for _ in range(4)}
            assert served == {victim.url, fast[0].url}
        finally:
            revived.stop()
