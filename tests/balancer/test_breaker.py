"""`CircuitBreaker`: open on failures, re-admit on an answer after the cooldown."""

from __future__ import annotations

from balancer.breaker import BreakerState, CircuitBreaker


def test_it_opens_after_the_threshold_of_consecutive_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown=5)
    breaker.record_failure(0)
    breaker.record_failure(0)
    assert breaker.allows(0) and breaker.state(0) is BreakerState.CLOSED
    breaker.record_failure(1)
    assert not breaker.allows(1) and breaker.state(1) is BreakerState.OPEN
    assert breaker.trips == 1


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown=5)
    breaker.record_failure(0)
    breaker.record_success()
    breaker.record_failure(0)
    assert breaker.allows(0)


def test_health_answers_do_not_reset_the_count() -> None:
    # A worker whose /health is fine but whose streams all fail must still go out.
    breaker = CircuitBreaker(failure_threshold=2, cooldown=5)
    breaker.record_failure(0)
    breaker.record_answer(0)
    breaker.record_failure(0)
    assert not breaker.allows(0)


def test_trip_opens_at_once() -> None:
    breaker = CircuitBreaker(failure_threshold=5, cooldown=5)
    breaker.trip(10)
    assert not breaker.allows(10)


def test_an_answer_readmits_only_after_the_cooldown() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=5)
    breaker.trip(100)
    breaker.record_answer(103)  # still cooling down
    assert not breaker.allows(103) and breaker.state(103) is BreakerState.OPEN
    assert breaker.state(105) is BreakerState.HALF_OPEN
    assert not breaker.allows(105)  # half open: waits for an answer, gets no traffic
    breaker.record_success()  # a request that started before the trip does not re-admit
    assert not breaker.allows(105)
    breaker.record_answer(105)
    assert breaker.allows(105) and breaker.state(105) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0


def test_failing_again_restarts_the_cooldown() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=5)
    breaker.trip(0)
    breaker.record_failure(4)
    breaker.record_answer(6)  # only 2 s since the last failure
    assert not breaker.allows(6)
    assert breaker.trips == 1  # still the same outage
