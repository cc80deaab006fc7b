"""`LatencyRecorder`: percentiles over a recent window, cumulative histogram buckets."""

from __future__ import annotations

from balancer.counters import LatencyRecorder


def test_percentiles_use_the_nearest_rank() -> None:
    recorder = LatencyRecorder()
    assert recorder.percentile(50) is None
    for ms in range(1, 101):
        recorder.observe(ms / 1000)
    assert recorder.percentile(50) == 0.05
    assert recorder.percentile(95) == 0.095
    assert recorder.percentile(100) == 0.1


def test_the_window_keeps_recent_samples_only() -> None:
    recorder = LatencyRecorder(window=3)
    for seconds in (9.0, 9.0, 9.0, 1.0, 1.0, 1.0):
        recorder.observe(seconds)
    assert recorder.percentile(95) == 1.0
    assert recorder.count == 6 and recorder.sum == 30.0


def test_buckets_are_cumulative() -> None:
    recorder = LatencyRecorder(buckets=(0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 2.0):
        recorder.observe(seconds)
    assert recorder.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
