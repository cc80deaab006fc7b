"""Policies: least loaded relative to capacity, fair among ties."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import pytest

from balancer.policies import LeastLoaded, PowerOfTwo, make_policy


@dataclass(eq=False)
class Stub:
    name: str
    in_flight: int = 0
    capacity: int = 1

    @property
    def load(self) -> float:
        return self.in_flight / self.capacity


def test_least_loaded_is_relative_to_capacity() -> None:
    small, big = Stub("small", in_flight=1, capacity=1), Stub("big", in_flight=2, capacity=4)
    assert LeastLoaded().select([small, big]) is big


def test_least_loaded_takes_turns_among_ties() -> None:
    workers = [Stub("a"), Stub("b"), Stub("c", in_flight=1)]
    policy = LeastLoaded()
    picks = Counter(policy.select(workers).name for _ in range(10))
    assert picks == {"a": 5, "b": 5}


def test_equal_fractions_tie() -> None:
    workers = [Stub("a", 1, 2), Stub("b", 2, 4)]
    policy = LeastLoaded()
    assert {policy.select(workers).name for _ in range(2)} == {"a", "b"}


def test_least_loaded_fills_workers_evenly() -> None:
    workers = [Stub("a", capacity=2), Stub("b", capacity=6)]
    policy = LeastLoaded()
    for _ in range(8):
        policy.select(workers).in_flight += 1
    assert [w.in_flight for w in workers] == [2, 6]


def test_power_of_two_takes_the_less_loaded_of_its_two_samples() -> None:
    busy, idle = Stub("busy", in_flight=3), Stub("idle")
    policy = PowerOfTwo(random.Random(1))
    assert all(policy.select([busy, idle]) is idle for _ in range(20))
    assert policy.select([busy]) is busy


def test_power_of_two_never_picks_the_most_loaded_of_three() -> None:
    workers = [Stub("a", 0), Stub("b", 1), Stub("c", 2)]
    policy = PowerOfTwo(random.Random(7))
    picks = Counter(policy.select(workers).name for _ in range(300))
    assert "c" not in picks and picks["a"] > picks["b"]


def test_policies_are_made_by_name() -> None:
    assert make_policy("least-loaded").name == "least-loaded"
    assert make_policy("power-of-two").name == "power-of-two"
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("random")
