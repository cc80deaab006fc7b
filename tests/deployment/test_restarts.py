"""The restart policy: a doubling delay, capped, a give-up after fast failures in a row, and a
fresh count after a run that stayed healthy."""

from __future__ import annotations

from deployment.restarts import RestartPolicy


def test_the_delay_doubles_with_each_fast_failure_until_the_policy_gives_up() -> None:
    policy = RestartPolicy(delay=1.0, limit=5)
    assert [policy.after_exit(None) for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, None]


def test_the_delay_is_capped() -> None:
    policy = RestartPolicy(delay=10.0, limit=10, max_delay=30.0)
    assert [policy.after_exit(5.0) for _ in range(4)] == [10.0, 20.0, 30.0, 30.0]


def test_a_run_that_stayed_healthy_starts_the_count_afresh() -> None:
    policy = RestartPolicy(delay=1.0, limit=3, stable_after=60.0)
    assert [policy.after_exit(None), policy.after_exit(59.0)] == [1.0, 2.0]
    assert policy.after_exit(60.0) == 1.0 and policy.fast_failures == 1
    assert policy.after_exit(None) == 2.0 and policy.after_exit(None) is None


def test_reset_forgets_the_failures() -> None:
    policy = RestartPolicy(delay=1.0, limit=2)
    assert policy.after_exit(None) == 1.0 and policy.after_exit(None) is None
    policy.reset()
    assert policy.after_exit(None) == 1.0
