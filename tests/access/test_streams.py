"""Per-key stream limits: a slot per stream, released exactly once."""

from __future__ import annotations

from access.keys import ApiKey, Role, digest
from access.streams import StreamLimits
from access.usage import KeyUsage


def test_the_limit_is_the_keys_own_or_the_default() -> None:
    limits = StreamLimits(default_limit=3)
    own = ApiKey("own", Role.USER, digest("a"), max_streams=1)
    default = ApiKey("default", Role.USER, digest("b"))
    assert (limits.limit(own), limits.limit(default)) == (1, 3)
    assert StreamLimits(None).limit(default) is None


def test_slots_count_once_and_free_a_place_when_released() -> None:
    key = ApiKey("k", Role.USER, digest("k"), max_streams=2)
    limits, usage = StreamLimits(None), KeyUsage()
    first, second = limits.take(key, usage), limits.take(key, usage)
    assert first is not None and second is not None
    assert limits.take(key, usage) is None
    first.release()
    first.release()  # a second release changes nothing
    assert (usage.streams_open, usage.streams) == (1, 2)
    third = limits.take(key, usage)
    assert third is not None and usage.streams_open == 2
    second.release()
    third.release()
    assert usage.streams_open == 0


def test_no_limit_means_no_refusal() -> None:
    key = ApiKey("k", Role.USER, digest("k"))
    limits, usage = StreamLimits(None), KeyUsage()
    assert all(limits.take(key, usage) is not None for _ in range(100))
