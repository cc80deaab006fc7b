"""The arithmetic of the concurrency benchmark's summary figures."""

from __future__ import annotations

from scripts.bench_concurrency import median_figures, t3_bound_ratio


def test_each_figure_is_its_own_median_over_the_runs() -> None:
    runs = [
        {"streams": 4, "throughput": 1.0, "ttfa_p95_s": 3.0},
        {"streams": 4, "throughput": 0.7, "ttfa_p95_s": 9.0},
        {"streams": 4, "throughput": 1.2, "ttfa_p95_s": 4.0},
    ]
    assert median_figures(runs) == {"streams": 4, "throughput": 1.0, "ttfa_p95_s": 4.0}


def test_t3_bound_counts_only_t3_time() -> None:
    one = {"audio_s": 4.0, "prefill_s": 0.1, "decode_s": 3.9, "vocode_s": 3.0}
    four = {"audio_s": 16.0, "prefill_s": 0.4, "decode_s": 7.6, "vocode_s": 11.0}
    # 16 s of audio in 8 s of T3 against 4 s in 4 s: twice the throughput, vocoding aside.
    assert t3_bound_ratio(one, four) == 2.0


def test_t3_bound_needs_the_breakdown() -> None:
    assert t3_bound_ratio({"audio_s": 4.0}, {"audio_s": 16.0}) is None
