"""The streaming benchmark's side-by-side output: another model next to Turbo, the baseline.
(A run of the two models takes minutes on the CPU: tests/scripts/test_bench_concurrency.py runs
the comparison in its cheapest form.)"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from scripts.bench_streaming import (
    compared_models,
    report,
    side_by_side,
    speech_tokens_decoded,
)
from server.engine.loading import ModelVariant


def test_turbo_runs_alone_and_any_other_model_after_turbo() -> None:
    assert compared_models(ModelVariant.TURBO) == [ModelVariant.TURBO]
    assert compared_models(ModelVariant.MULTILINGUAL) == [
        ModelVariant.TURBO,
        ModelVariant.MULTILINGUAL,
    ]


def test_only_turbo_decodes_trailing_silence() -> None:
    generated = [5, 6561, 7, 6562]  # speech tokens and T3's start/stop tokens
    turbo = SimpleNamespace(variant=ModelVariant.TURBO)
    multilingual = SimpleNamespace(variant=ModelVariant.MULTILINGUAL)
    assert speech_tokens_decoded(turbo, generated) == [5, 7, 4299, 4299, 4299]
    assert speech_tokens_decoded(multilingual, generated) == [5, 7]


def test_the_table_has_a_column_per_model_and_a_row_per_figure() -> None:
    table = side_by_side({"turbo": {"ttfa_s": 0.5, "seams": 1}, "multilingual": {"ttfa_s": 2.25}})
    assert table.splitlines() == [
        "figure  turbo  multilingual",
        "ttfa_s  0.5    2.25",
        "seams   1",
    ]


def test_one_model_writes_flat_figures_and_several_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    report({"turbo": {"ttfa_s": 0.5}}, out)
    assert json.loads(out.read_text()) == {"ttfa_s": 0.5}  # as gpu_check.sh reads it
    report({"turbo": {"ttfa_s": 0.5}, "original": {"ttfa_s": 1.0}}, out)
    assert json.loads(out.read_text()) == {
        "baseline": "turbo",
        "model": "original",
        "models": {"turbo": {"ttfa_s": 0.5}, "original": {"ttfa_s": 1.0}},
    }
