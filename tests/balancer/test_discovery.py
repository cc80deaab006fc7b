"""Workers that come and go while the balancer runs: added ones join once healthy, removed ones
finish what they run and then leave; a source that cannot answer changes nothing."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from balancer.breaker import CircuitBreaker
from balancer.config import BalancerConfig, DnsName
from balancer.discovery import (
    Discovery,
    DnsSource,
    SourceUnavailable,
    StaticSource,
    WorkersFile,
    sources_from,
)
from balancer.discovery.base import WorkerSource
from balancer.policies import LeastLoaded
from balancer.pool import Health, Worker, WorkerPool
from tests.balancer.conftest import stream
from tests.balancer.processes import FakeWorker, LiveBalancer, free_port, live_balancer, wait_for
from tests.balancer.test_discovery_sources import FakeResolver
from tests.balancer.test_worker_websockets import CHUNK_BYTES, MULTI, _turn, _ws
from tests.server.test_drain import RunningStream


class ListedSource:
    """A source whose answer the test sets: `urls`, or `SourceUnavailable(problem)`."""

    def __init__(self, *urls: str, name: str = "test source"):
        self.urls = frozenset(urls)
        self.name = name
        self.problem: str | None = None

    async def discover(self) -> frozenset[str]:
        if self.problem is not None:
            raise SourceUnavailable(self.problem)
        return self.urls


def make_pool(*urls: str) -> WorkerPool:
    pool = WorkerPool(urls, LeastLoaded(), lambda: CircuitBreaker(1, 5.0), clock=lambda: 0.0)
    for worker in pool:
        worker.health = Health.READY
    return pool


def urls(pool: WorkerPool) -> list[str]:
    return [w.url for w in pool]


def in_stats(lb: LiveBalancer, url: str) -> dict[str, Any] | None:
    return next((w for w in lb.stats()["workers"] if w["url"] == url), None)


def refresh(discovery: Discovery) -> None:
    asyncio.run(discovery.refresh())


def test_listed_workers_join_and_are_checked_before_any_traffic() -> None:
    pool = make_pool()
    checked: list[Worker] = []

    async def check(worker: Worker) -> None:
        checked.append(worker)

    refresh(Discovery(pool, [ListedSource("http://b", "http://a")], 1.0, check))
    assert urls(pool) == ["http://a", "http://b"] and checked == pool.workers
    assert all(w.health is Health.UNKNOWN for w in pool) and pool.route() is None
    pool.workers[1].health = Health.READY  # what the check says once the worker is up
    lease = pool.route()
    assert lease is not None and lease.worker.url == "http://b"


def test_an_unlisted_worker_finishes_its_requests_then_leaves() -> None:
    pool = make_pool("http://a", "http://b")
    source = ListedSource("http://a", "http://b")
    discovery = Discovery(pool, [source], 1.0)
    running = pool.route()  # on a: least loaded, first
    assert running is not None and running.worker.url == "http://a"
    retiring = running.worker
    source.urls = frozenset({"http://b"})
    refresh(discovery)
    assert urls(pool) == ["http://a", "http://b"] and retiring.retiring
    assert pool.in_flight == 1
    for _ in range(3):  # new requests go elsewhere, though a is the less loaded
        lease = pool.route()
        assert lease is not None and lease.worker.url == "http://b"
        lease.release()
    refresh(discovery)
    assert urls(pool) == ["http://a", "http://b"]  # still running one
    running.release()
    running.release()
    assert retiring.in_flight == 0 and pool.in_flight == 0
    refresh(discovery)
    assert urls(pool) == ["http://b"]


def test_a_worker_listed_again_before_it_left_is_back_in_rotation() -> None:
    pool = make_pool("http://a")
    source = ListedSource("http://a")
    discovery = Discovery(pool, [source], 1.0)
    lease = pool.route()
    assert lease is not None
    lease.worker.counters.requests = 7
    source.urls = frozenset()
    refresh(discovery)
    assert lease.worker.retiring and pool.route() is None
    source.urls = frozenset({"http://a"})
    refresh(discovery)
    assert pool.workers == [lease.worker] and not lease.worker.retiring
    assert lease.worker.counters.requests == 7
    second = pool.route()
    assert second is not None and second.worker is lease.worker


def test_the_pool_is_the_union_and_a_source_that_fails_keeps_its_last_list(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = make_pool("http://static")
    listed = ListedSource("http://a", "http://shared", name="workers file f")
    other = ListedSource("http://shared", name="DNS n:1")
    discovery = Discovery(pool, [StaticSource(["http://static"]), listed, other], 1.0)
    refresh(discovery)
    assert urls(pool) == ["http://static", "http://a", "http://shared"]
    listed.urls = frozenset({"http://a"})
    refresh(discovery)
    assert not any(w.retiring for w in pool)  # still listed by the other source
    with caplog.at_level(logging.INFO, logger="balancer"):
        other.problem = listed.problem = "cannot read it (No such file or directory)"
        for _ in range(3):
            refresh(discovery)
        assert urls(pool) == ["http://static", "http://a", "http://shared"]
        assert not any(w.retiring for w in pool)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [  # once each, not every interval
            "workers file f: cannot read it (No such file or directory); "
            "keeping its last 1 worker(s)",
            "DNS n:1: cannot read it (No such file or directory); keeping its last 1 worker(s)",
        ]
        listed.problem = None
        listed.urls = frozenset()
        refresh(discovery)
        assert "workers file f: answering again, 0 worker(s)" in caplog.messages
    assert urls(pool) == ["http://static", "http://shared"]  # a: retired, idle, gone
    assert discovery.watched
    assert not Discovery(pool, [StaticSource(["http://static"])], 1.0).watched  # no loop


def test_the_sources_are_the_ones_configured(tmp_path: Path) -> None:
    config = BalancerConfig(workers=("http://a:1",))
    assert [type(s) for s in sources_from(config)] == [StaticSource]
    config = replace(config, workers_file=tmp_path / "w", workers_dns=DnsName("tts", 6093))
    sources = sources_from(config)
    assert [type(s) for s in sources] == [StaticSource, WorkersFile, DnsSource]
    assert [s.name for s in sources[1:]] == [f"workers file {tmp_path / 'w'}", "DNS tts:6093"]


def test_dns_addresses_come_and_go_and_a_failed_resolution_changes_nothing() -> None:
    resolver = FakeResolver()
    resolver.error = OSError("temporary failure in name resolution")
    pool = make_pool()
    discovery = Discovery(pool, [DnsSource(DnsName("tts", 6093), resolver)], 1.0)
    refresh(discovery)  # nothing known yet: an empty pool, until the name resolves
    assert urls(pool) == []
    resolver.error = None
    resolver.addresses = ["10.0.0.1", "10.0.0.2"]
    refresh(discovery)
    assert urls(pool) == ["http://10.0.0.1:6093", "http://10.0.0.2:6093"]
    resolver.addresses = ["10.0.0.2", "10.0.0.3"]  # a pod replaced
    refresh(discovery)
    assert urls(pool) == ["http://10.0.0.2:6093", "http://10.0.0.3:6093"]  # 10.0.0.1 idle: gone
    for error in (OSError("no answer"), None):
        resolver.error = error
        resolver.addresses = []  # None: resolves to nothing, also a hiccup
        refresh(discovery)
        assert urls(pool) == ["http://10.0.0.2:6093", "http://10.0.0.3:6093"]
        assert not any(w.retiring for w in pool)
    assert len(resolver.asked) == 5


def test_discovery_keeps_running_through_a_broken_source() -> None:
    class Broken:
        name = "broken"
        calls = 0

        async def discover(self) -> frozenset[str]:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("a bug")
            return frozenset({"http://a"})

    pool = make_pool()
    broken = Broken()
    sources: list[WorkerSource] = [broken]

    async def scenario() -> None:
        discovery = Discovery(pool, sources, 0.01)
        discovery.start()
        for _ in range(500):
            if urls(pool):
                break
            await asyncio.sleep(0.01)
        await discovery.stop()

    asyncio.run(scenario())
    assert urls(pool) == ["http://a"] and broken.calls >= 2


def test_file_edits_add_and_retire_workers_while_streams_run(
    fast: list[FakeWorker], logs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Streams of 2 s: the one running on the removed worker outlives the edits.
    leaving = FakeWorker("--chunks", "40", "--delay", "0.05", log_dir=logs).start()
    staying = fast[0]
    nobody = f"http://127.0.0.1:{free_port()}"  # listed, but nothing answers there
    workers_file = tmp_path / "workers"
    workers_file.write_text(f"# one worker for now\n{leaving.url}\n")
    try:
        leaving.wait_ready()
        with live_balancer(
            [], workers_file=workers_file, discovery_interval=0.05, health_interval=0.1
        ) as lb:
            assert [w["url"] for w in lb.stats()["workers"]] == [leaving.url]
            assert lb.worker_stats(leaving.url)["in_rotation"]
            running = RunningStream(lb.url)  # on `leaving`, the only worker
            with _ws(lb.url, MULTI) as socket:  # and so is this socket
                lb.wait_in_flight(2)

                workers_file.write_text(f"{staying.url}\n{nobody}\nnot a url/x\n")
                wait_for(
                    lambda: (in_stats(lb, staying.url) or {}).get("in_rotation"), 10, "joining"
                )
                stats = lb.stats()
                retiring = lb.worker_stats(leaving.url)
                assert retiring["retiring"] and not retiring["in_rotation"]
                assert retiring["in_flight"] == 2
                assert stats["balancer"]["workers_retiring"] == 1
                assert stats["balancer"]["capacity"] == 4  # the staying worker's alone
                wait_for(lambda: lb.worker_stats(nobody)["health"] == "unreachable", 10, "a check")
                assert "balancer_worker_retiring" in httpx.get(f"{lb.url}/metrics").text
                served = [stream(lb.url)[0].headers["x-upstream-worker"] for _ in range(3)]
                assert served == [staying.url] * 3

                # What runs on the removed worker runs to its end: the stream, and the socket,
                # which still takes new text.
                assert len(_turn(socket, "after-the-edit")) == 40 * CHUNK_BYTES
                events = running.finish()
                assert events[-1] == "done" and events.count("audio_chunk") == 40
                assert in_stats(lb, leaving.url) is not None  # the socket is still open
            wait_for(lambda: in_stats(lb, leaving.url) is None, 10, "the removed worker to leave")
            assert leaving.url not in httpx.get(f"{lb.url}/metrics").text
            assert lb.state.pool.in_flight == 0

            workers_file.write_text(f"{staying.url}\n")
            wait_for(lambda: len(lb.stats()["workers"]) == 1, 10, "the dead entry to go")
            assert httpx.get(f"{lb.url}/health").json()["status"] == "ok"
    finally:
        leaving.stop()
    bad_lines = [m for m in caplog.messages if "line 3: a worker URL has no path" in m]
    assert len(bad_lines) == 1 and str(workers_file) in bad_lines[0]
