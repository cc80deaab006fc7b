"""The arithmetic of the concurrency benchmark's summary figures, and a short run of another
model side by side with Turbo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.bench_concurrency import main, median_figures, t3_bound_ratio, table_rows
from tests.conftest import TEST_DEVICE


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


@pytest.mark.model
def test_multilingual_runs_side_by_side_with_turbo(tmp_path: Path) -> None:
    """--model multilingual in its cheapest form: Turbo first (the baseline), then the
    multilingual model, one column each."""
    out = tmp_path / "figures.json"
    argv = ["--model", "multilingual", "--device", str(TEST_DEVICE), "--json", str(out)]
    argv += ["--modes", "batched", "--levels", "1", "--tokens", "8", "--repeats", "1"]
    assert main(argv) == 0
    figures = json.loads(out.read_text())
    assert (figures["baseline"], figures["model"]) == ("turbo", "multilingual")
    assert list(figures["models"]) == ["turbo", "multilingual"]
    for model in figures["models"].values():
        (one,) = model["batched"]
        assert one["streams"] == 1
        for key in ("wall_s", "audio_s", "throughput", "ttfa_p50_s", "ttfa_p95_s"):
            assert isinstance(one[key], float) and one[key] > 0, (key, one)


def test_table_rows_name_each_mode_figure_and_level() -> None:
    measured = {
        "batched": [{"streams": 1, "throughput": 0.5}, {"streams": 4, "throughput": 1.5}],
        "throughput_ratio_4": 3.0,
    }
    assert table_rows(measured) == {
        "batched throughput @1": 0.5,
        "batched throughput @4": 1.5,
        "throughput_ratio_4": 3.0,
    }
