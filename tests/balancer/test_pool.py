"""`WorkerPool` and `Lease`: routing only to workers in rotation, counts that never drift."""

from __future__ import annotations

import random

import pytest

from balancer.breaker import CircuitBreaker
from balancer.policies import LeastLoaded
from balancer.pool import Health, Lease, WorkerPool


def make_pool(*urls: str, ready: bool = True) -> WorkerPool:
    pool = WorkerPool(urls, LeastLoaded(), lambda: CircuitBreaker(1, 5.0), clock=lambda: 0.0)
    for worker in pool:
        worker.health = Health.READY if ready else Health.UNKNOWN
    return pool


def test_a_lease_counts_the_request_until_released_once() -> None:
    pool = make_pool("http://a")
    lease = pool.route()
    assert lease is not None and lease.worker.in_flight == 1
    lease.release()
    lease.release()
    assert lease.released and lease.worker.in_flight == 0


@pytest.mark.parametrize(
    "health", [Health.UNKNOWN, Health.LOADING, Health.FAILED, Health.UNREACHABLE]
)
def test_only_ready_workers_get_traffic(health: Health) -> None:
    pool = make_pool("http://a", "http://b")
    pool.workers[0].health = health
    for _ in range(4):
        lease = pool.route()
        assert lease is not None and lease.worker.url == "http://b"


def test_an_open_breaker_takes_a_worker_out_of_rotation() -> None:
    pool = make_pool("http://a", "http://b")
    pool.workers[1].breaker.trip(0.0)
    assert [w.url for w in pool.available()] == ["http://a"]


def test_excluded_workers_are_skipped_and_none_when_nobody_is_left() -> None:
    pool = make_pool("http://a", "http://b")
    first = pool.route()
    assert first is not None
    second = pool.route(exclude=[first.worker])
    assert second is not None and second.worker is not first.worker
    assert pool.route(exclude=pool.workers) is None
    assert make_pool("http://a", ready=False).route() is None


def test_counts_never_drift_under_random_churn() -> None:
    rng = random.Random(4)
    pool = make_pool("http://a", "http://b", "http://c")
    pool.workers[2].capacity = 2
    open_leases: list[Lease] = []
    for _ in range(5000):
        if open_leases and rng.random() < 0.5:
            lease = open_leases.pop(rng.randrange(len(open_leases)))
            for _ in range(rng.randint(1, 3)):  # released from several places at once
                lease.release()
        else:
            lowest = min(w.load for w in pool)
            lease_or_none = pool.route()
            assert lease_or_none is not None
            assert (lease_or_none.worker.in_flight - 1) / lease_or_none.worker.capacity == lowest
            open_leases.append(lease_or_none)
        assert all(w.in_flight >= 0 for w in pool)
        assert pool.in_flight == len(open_leases)
    for lease in open_leases:
        lease.release()
    assert [w.in_flight for w in pool] == [0, 0, 0]


def test_a_retired_worker_takes_no_new_requests_and_leaves_once_its_leases_are_released() -> None:
    pool = make_pool("http://a", "http://b")
    held = [pool.route(), pool.route()]
    assert [lease.worker.url for lease in held if lease] == ["http://a", "http://b"]
    retired = pool.retire("http://a")
    assert retired is not None and retired.retiring and pool.retire("http://a") is None
    assert pool.retire("http://nobody") is None
    assert [w.url for w in pool.available()] == ["http://b"]
    assert pool.remove_idle_retired() == [] and len(pool) == 2  # a still runs one
    assert pool.in_flight == 2
    for lease in held:
        assert lease is not None
        lease.release()
        lease.release()
    assert retired.in_flight == 0 and pool.in_flight == 0
    assert pool.remove_idle_retired() == [retired]
    assert [w.url for w in pool] == ["http://b"] and pool.find("http://a") is None


def test_an_added_worker_is_unchecked_and_a_retiring_one_comes_back() -> None:
    pool = make_pool("http://a")
    added = pool.add("http://b")
    assert added is not None and added.health is Health.UNKNOWN
    assert [w.url for w in pool] == ["http://a", "http://b"] and pool.add("http://b") is None
    assert added.breaker is not pool.workers[0].breaker  # one breaker each
    assert [w.url for w in pool.available()] == ["http://a"]  # no traffic before a check
    retired = pool.retire("http://a")
    assert retired is not None and pool.route() is None
    assert pool.add("http://a") is retired and not retired.retiring
    lease = pool.route()
    assert lease is not None and lease.worker is retired
