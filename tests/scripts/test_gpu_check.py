"""The GPU check (scripts/gpu_check.sh) in its CPU form, as CI runs it so that it cannot rot: a
few model tests and tiny benchmarks with this checkout's environment, and the summary it
writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
STEPS = [
    "environment",
    "install",
    "imports",
    "checkpoint",
    "tests",
    "tests_other_models",
    "bench_streaming_bf16",
    "bench_concurrency_bf16",
    "bench_streaming_fp32",
    "bench_concurrency_fp32",
]

pytestmark = [
    pytest.mark.model,
    # The check runs the model tests itself (never this one): no check inside a check.
    pytest.mark.skipif("CHATTERBOX_GPU_CHECK" in os.environ, reason="inside the GPU check"),
]


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("gpu-check-out")
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "CHATTERBOX_TEST_DEVICE")}
    env["GPU_CHECK_WORK"] = str(tmp_path_factory.mktemp("gpu-check-work"))
    command = [str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out)]
    # This checkout's environment as it is: no wheels to install here.
    command += ["--no-install", "--python", sys.executable]
    done = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gpu_check: done in" in done.stdout
    assert (out / "gpu_check.log").stat().st_size > 0
    assert (out / "pytest.xml").is_file()
    found: dict[str, object] = json.loads((out / "gpu_check.json").read_text())
    found["stdout"] = done.stdout
    return found


def test_every_step_runs_in_order_and_passes_or_says_why_not(summary: dict[str, object]) -> None:
    steps = summary["steps"]
    assert isinstance(steps, list)
    assert [s["name"] for s in steps] == STEPS, summary["stdout"]
    by_name = {s["name"]: s for s in steps}
    install = by_name["install"]
    assert install["status"] == "skipped" and "--no-install" in install["note"]
    for name in ("environment", "imports", "checkpoint", "tests"):
        assert by_name[name]["status"] == "ok", (name, summary["stdout"])
    assert by_name["tests_other_models"]["status"] == "skipped"  # Turbo only when quick
    # Quick: bf16 only once the benchmarks take --dtype; fp32 (their default) without it.
    flags = summary["bench_dtype_flag"]
    assert isinstance(flags, dict) and set(flags) == {"streaming", "concurrency"}
    for bench in ("streaming", "concurrency"):
        bf16, fp32 = by_name[f"bench_{bench}_bf16"], by_name[f"bench_{bench}_fp32"]
        assert bf16["status"] == ("ok" if flags[bench] else "skipped"), summary["stdout"]
        assert fp32["status"] == ("skipped" if flags[bench] else "ok"), summary["stdout"]
        assert flags[bench] is None or "bf16 only" in fp32["note"]
    for step in steps:
        assert step["seconds"] <= step["budget_s"] + 20
        assert f"gpu_check: {step['name']}" in str(summary["stdout"])


def test_the_summary_holds_the_machine_the_tests_and_the_figures(
    summary: dict[str, object],
) -> None:
    assert summary["device"] == "cpu" and summary["quick"] is True
    environment = summary["environment"]
    assert isinstance(environment, dict) and environment["torch"]
    versions = summary["versions"]
    assert isinstance(versions, dict) and versions["chatterbox-tts"] == "0.1.7"
    tests = summary["tests"]
    assert isinstance(tests, dict)
    assert tests["total"] == tests["passed"] == 2 and tests["problems"] == []
    bench = summary["bench"]
    assert isinstance(bench, dict)
    streaming = bench["streaming"]["bf16"]
    assert streaming["device"] == "cpu" and streaming["ttfa_s"] > 0 and streaming["rtf_stream"] > 0
    assert streaming["dtype"] == "bfloat16"
    levels = [r["streams"] for r in bench["concurrency"]["bf16"]["batched"]]
    assert levels == [1, 2]
    goals = summary["goals"]
    assert isinstance(goals, dict)
    # One stream's goals and the tests' are judged; 16 streams are not run in the quick check.
    assert goals["no_test_fails"]["met"] is True
    # Judged on the bf16 run (the goals' dtype) now that the benchmarks take --dtype.
    ttfa_goal = goals["ttfa_one_stream_s"]
    assert ttfa_goal["dtype"] == "bf16"
    assert ttfa_goal["value"] == bench["streaming"]["bf16"]["ttfa_s"] > 0
    assert "throughput_16_over_1" not in goals
