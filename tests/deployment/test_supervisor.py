"""`start_streaming_servers.sh` keeping a deployment of fake workers running: a killed worker
comes back while the other serves (so does a killed balancer), a crash loop is given up on,
SIGHUP replaces the workers one at a time without a failed request, SIGTERM lets running
streams finish."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.access_checks import write_keys
from tests.balancer.conftest import stream
from tests.balancer.processes import wait_for
from tests.deployment.harness import Deployment, deployment
from tests.sse import iter_events

# Streams of one second: 20 chunks of 50 ms.
WORKER_FLAGS = ("--chunks", "20", "--delay", "0.05")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    work = tmp_path_factory.mktemp("supervised")
    with deployment(work, "--restart-delay", "0.2", worker_flags=WORKER_FLAGS) as up:
        assert "Chatterbox streaming is up" in up.text, up.text
        yield up


@dataclass
class StreamLoop:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def stream_loop(url: str, clients: int) -> Iterator[StreamLoop]:
    """`clients` threads streaming through the balancer back to back until the block ends."""
    results, stop = StreamLoop(), threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                response, events = stream(url)
                if events and events[-1].event == "done":
                    outcome = ""
                else:
                    outcome = f"{response.status_code}: {events[-1] if events else response.text}"
            except httpx.HTTPError as exc:
                outcome = repr(exc)
            with results.lock:
                if outcome:
                    results.failures.append(outcome)
                else:
                    results.ok += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield results
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


def test_a_killed_worker_is_restarted_while_the_other_keeps_serving(live: Deployment) -> None:
    killed = live.pid("cpu0 worker")
    os.kill(killed, signal.SIGKILL)
    live.wait_output(rf"the cpu0 worker \(pid {killed}\) was killed by SIGKILL .*restarting it")
    served = [stream(live.balancer)[1][-1].event for _ in range(3)]
    assert served == ["done"] * 3  # the other worker (or the balancer's failover) serves
    live.wait_output(r"the cpu0 worker is back \(pid \d+\), healthy after")
    assert live.pid("cpu0 worker") != killed and live.process.poll() is None
    wait_for(lambda: sorted(live.in_rotation()) == live.workers, 10, "both workers in rotation")
    assert "fast failure 1 of 5" in live.text


def test_a_killed_balancer_is_restarted(live: Deployment) -> None:
    killed = live.pid("balancer")
    os.kill(killed, signal.SIGKILL)
    live.wait_output(rf"the balancer \(pid {killed}\) was killed by SIGKILL .*restarting it")
    live.wait_output(r"the balancer is back")
    wait_for(lambda: sorted(live.in_rotation()) == live.workers, 10, "both workers in rotation")
    assert stream(live.balancer)[1][-1].event == "done"


def test_sighup_replaces_every_worker_one_at_a_time_with_no_failed_request(
    live: Deployment,
) -> None:
    before = [live.pid("cpu0 worker"), live.pid("cpu1 worker")]
    with stream_loop(live.balancer, clients=3) as results:
        wait_for(lambda: results.ok >= 3, 30, "streams before the restart")
        live.process.send_signal(signal.SIGHUP)
        live.wait_output("rolling restart done", timeout=90)
        done_before = results.ok
        wait_for(lambda: results.ok >= done_before + 3, 30, "streams after the restart")
    assert results.failures == []
    after = [live.pid("cpu0 worker"), live.pid("cpu1 worker")]
    assert after[0] != before[0] and after[1] != before[1]
    text = live.text
    steps = [
        "replacing the cpu0 worker (1/2): draining it",
        "the cpu0 worker exited with status 0 for the rolling restart",
        "the cpu0 worker is back",
        "replacing the cpu1 worker (2/2): draining it",
        "the cpu1 worker exited with status 0 for the rolling restart",
        "the cpu1 worker is back",
        "rolling restart done",
    ]
    positions = [text.rindex(step) for step in steps]
    assert positions == sorted(positions), text
    assert sorted(live.in_rotation()) == live.workers


def test_sigterm_lets_running_streams_finish_then_stops_everything(live: Deployment) -> None:
    assert len(live.survivors()) >= 4  # the script, two workers, the balancer
    with httpx.stream(
        "POST", f"{live.balancer}/synthesize-stream", data={"text": "Hi."}, timeout=30
    ) as response:
        events = iter_events(response)
        assert next(events).event == "audio_chunk"
        live.process.send_signal(signal.SIGTERM)
        rest = [event.event for event in events]
    assert rest[-1] == "done" and rest.count("audio_chunk") == 19
    assert live.process.wait(timeout=60) == 143
    wait_for(lambda: live.survivors() == [], 10, "every child to exit")
    assert "stopped." in live.text


def test_a_crash_loop_is_given_up_on_while_the_rest_serves(tmp_path: Path) -> None:
    flags = ("--restart-limit", "2", "--restart-delay", "0.1")
    with deployment(tmp_path, *flags, worker_flags=WORKER_FLAGS) as live:
        first = live.pid("cpu0 worker")
        os.kill(first, signal.SIGKILL)
        live.wait_output(r"the cpu0 worker is back")
        os.kill(live.pid("cpu0 worker"), signal.SIGKILL)
        live.wait_output(r"GIVING UP on the cpu0 worker: it was killed by SIGKILL")
        assert "fast failure 1 of 2" in live.text
        assert live.process.poll() is None
        wait_for(lambda: live.in_rotation() == [live.workers[1]], 10, "cpu0 out of rotation")
        assert stream(live.balancer)[1][-1].event == "done"
        # SIGHUP starts a given-up worker again.
        live.process.send_signal(signal.SIGHUP)
        live.wait_output("starting the cpu0 worker again")
        live.wait_output("rolling restart done", timeout=60)
        assert sorted(live.in_rotation()) == live.workers


def test_a_worker_that_dies_during_startup_fails_the_start(tmp_path: Path) -> None:
    with deployment(tmp_path, "--worker-module", "tests.no_such_worker", workers=1) as live:
        assert live.process.wait(timeout=60) == 1
        assert "the cpu0 worker exited with status 1 during startup" in live.text
        assert "No module named tests.no_such_worker" in live.text  # the end of its log
        wait_for(lambda: live.survivors() == [], 10, "every child to exit")


def test_with_restricted_stats_the_deployment_comes_up_and_restarts(tmp_path: Path) -> None:
    # `--restrict-ops` closes the balancer's /stats to all but admin keys, and the supervisor
    # reads it to tell when a worker is back in rotation: it uses a key of its own.
    keys = write_keys(tmp_path / "keys.toml")
    env = {"BALANCER_API_KEYS_FILE": str(keys), "BALANCER_RESTRICT_OPS": "1"}
    with deployment(tmp_path, workers=1, worker_flags=WORKER_FLAGS, env=env) as live:
        assert "Chatterbox streaming is up" in live.text, live.text
        assert httpx.get(f"{live.balancer}/stats", timeout=5).status_code == 401
        live.process.send_signal(signal.SIGHUP)
        live.wait_output("rolling restart done", timeout=60)
        assert "the cpu0 worker is back" in live.text
