"""Fake worker processes (`tests.fake_worker`) and an in-thread balancer, on loopback.

Workers are real processes, each with its own port, forked from a server process that has
already imported the worker (torch and all): a fresh `python -m tests.fake_worker` spends
about 3 s of CPU on imports, which on two cores would dominate the suite.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import httpx

from balancer.app import Balancer, create_app
from balancer.config import BalancerConfig
from tests.live_server import LiveServer

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0
T = TypeVar("T")

FORKS = multiprocessing.get_context("forkserver")
# The fake engine imports chatterbox lazily, on a worker's first voice upload.
FORKS.set_forkserver_preload(["tests.fake_worker", "chatterbox.models.t3.modules.cond_enc"])


def run_fake_worker(argv: list[str], log: Path | None) -> None:
    """The body of a worker process: `python -m tests.fake_worker ARGV`, logging to `log`."""
    from tests import fake_worker

    if log is not None:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(fd, sys.stdout.fileno())
        os.dup2(fd, sys.stderr.fileno())
    fake_worker.main(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(probe: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll `probe` until it returns something other than None/False (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


class FakeWorker:
    """One `tests.fake_worker` process; `flags` are its command-line options."""

    def __init__(self, *flags: str, port: int | None = None, log_dir: Path | None = None):
        self.port = port or free_port()
        self.flags = flags
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> FakeWorker:
        argv = ["--port", str(self.port), *self.flags]
        log = None if self.log_dir is None else self.log_dir / f"fake_worker_{self.port}.log"
        self.process = FORKS.Process(target=run_fake_worker, args=(argv, log), daemon=True)
        self.process.start()
        return self

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def health(self) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = httpx.get(f"{self.url}/health", timeout=2).json()
            return body
        except (httpx.HTTPError, ValueError):
            return None

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> FakeWorker:
        def ready() -> bool:
            assert self.process is not None
            if not self.process.is_alive():
                code = self.process.exitcode
                raise RuntimeError(f"fake worker {self.flags} exited with {code}")
            health = self.health()
            return health is not None and health["status"] == "ready"

        wait_for(ready, timeout, f"fake worker on {self.port}")
        return self

    def wait_idle(self, timeout: float = 10.0) -> None:
        def idle() -> bool:
            health = self.health()
            return health is not None and health["active_streams"] == 0 and health["queued"] == 0

        wait_for(idle, timeout, f"fake worker on {self.port} to be idle")

    def metric(self, line_prefix: str) -> float:
        """The value of the first /metrics sample starting with `line_prefix` (0 if absent)."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(line_prefix):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def kill(self) -> None:
        """SIGKILL, as a crash would, and wait until the process is gone."""
        if self.process is None or self.process.pid is None:
            return
        if self.process.is_alive():
            self.process.kill()
        self.process.join(STOP_TIMEOUT_S)

    def stop(self) -> None:
        if self.process is not None and self.process.pid is not None and self.process.is_alive():
            self.process.terminate()
            self.process.join(STOP_TIMEOUT_S)
        self.kill()


@contextmanager
def fake_workers(*specs: Sequence[str], log_dir: Path | None = None) -> Iterator[list[FakeWorker]]:
    """Start one fake worker per flag list, all at once, and wait until every one is ready."""
    workers = [FakeWorker(*flags, log_dir=log_dir) for flags in specs]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready()
        yield workers
    finally:
        for worker in workers:
            worker.stop()


# Fast settings for tests: short health interval and cooldown so re-admission is quick.
TEST_CONFIG = BalancerConfig(
    workers=(),
    host="127.0.0.1",
    port=0,
    health_interval=0.2,
    health_timeout=2.0,
    connect_timeout=2.0,
    read_timeout=30.0,
    breaker_cooldown=0.5,
    static_dir=None,
    shutdown_grace=1.0,
)


class LiveBalancer:
    def __init__(self, server: LiveServer, state: Balancer):
        self.url = server.url
        self.state = state

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/stats", timeout=5).json()
        return body

    def worker_stats(self, url: str) -> dict[str, Any]:
        return next(w for w in self.stats()["workers"] if w["url"] == url)

    def wait_in_flight(self, expected: int, timeout: float = 10.0) -> None:
        wait_for(
            lambda: self.stats()["balancer"]["in_flight"] == expected,
            timeout,
            f"{expected} requests in flight",
        )


@contextmanager
def live_balancer(
    workers: Sequence[str], *, uvicorn_options: dict[str, Any] | None = None, **overrides: Any
) -> Iterator[LiveBalancer]:
    """A balancer in a thread; `overrides` change its config, `uvicorn_options` its server."""
    config = replace(TEST_CONFIG, workers=tuple(workers), **overrides)
    app = create_app(config)
    with LiveServer(app, **(uvicorn_options or {})) as server:
        yield LiveBalancer(server, app.balancer)
