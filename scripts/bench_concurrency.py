"""Concurrent streams on one device: batched T3 decoding vs one stream at a time, in one run.

For 1, 2, 4 and 8 concurrent streams (all submitted at once, each `--tokens` speech tokens;
each level run `--repeats` times, medians reported), prints aggregate generated audio seconds
per wall second and time to first audio p50/p95, for the batch scheduler and for the serial
baseline. With --json writes the figures, including `throughput_ratio_4` (4-stream batched
throughput / single-stream throughput) and `t3_bound_throughput_ratio_4` (the same ratio
counting only T3's time, i.e. what it would be if token-to-wave were free: the ceiling that
batching T3 can reach on this device); with --plot a PNG of throughput and time to first audio
against concurrency.

    python scripts/bench_concurrency.py [--ckpt-dir DIR] [--json out.json] [--plot out.png]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.engine.__main__ import default_device, random_checkpoint
from server.engine.batch_scheduler import DeviceTime
from server.engine.device_thread import DeviceThread
from server.engine.engine import (
    SAMPLE_RATE,
    EngineConfig,
    StreamingEngine,
    SynthesisRequest,
)
from server.engine.loading import ModelVariant, load_model
from server.engine.runners import BatchedRunner, EngineRunner, SerialRunner
from server.engine.sampling import TURBO_DEFAULTS

LEVELS = (1, 2, 4, 8)
TEXT = "Several listeners are waiting for their own sentences at the very same time."


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _one_stream(
    runner: EngineRunner, seed: int, tokens: int, started: float
) -> tuple[float, float]:
    request = SynthesisRequest(
        TEXT, TURBO_DEFAULTS, seed=seed, max_new_tokens=tokens, started_at=started
    )
    first, samples = 0.0, 0
    async for chunk in runner.stream(request):
        first = first or time.perf_counter() - started
        samples += chunk.audio.size
    return first, samples / SAMPLE_RATE


def _device_time(runner: EngineRunner) -> DeviceTime | None:
    time_spent = getattr(runner, "device_time", None)
    return dataclasses.replace(time_spent) if isinstance(time_spent, DeviceTime) else None


def _breakdown(before: DeviceTime | None, after: DeviceTime | None) -> dict[str, float]:
    """Where the batch scheduler's thread spent this level's time."""
    if before is None or after is None:
        return {}
    steps = after.decode_steps - before.decode_steps
    rows = after.decoded_tokens - before.decoded_tokens
    decode = after.decode_s - before.decode_s
    return {
        "prefill_s": round(after.prefill_s - before.prefill_s, 2),
        "decode_s": round(decode, 2),
        "vocode_s": round(after.vocode_s - before.vocode_s, 2),
        "streams_per_step": round(rows / steps, 2) if steps else 0.0,
        "ms_per_step": round(1000 * decode / steps, 1) if steps else 0.0,
    }


async def _level(runner: EngineRunner, streams: int, tokens: int) -> dict[str, float]:
    before = _device_time(runner)
    started = time.perf_counter()
    results = await asyncio.gather(
        *(_one_stream(runner, 100 + i, tokens, started) for i in range(streams))
    )
    wall = time.perf_counter() - started
    ttfa = [r[0] for r in results]
    audio = sum(r[1] for r in results)
    return {
        "streams": streams,
        "wall_s": round(wall, 3),
        "audio_s": round(audio, 3),
        "throughput": round(audio / wall, 4),
        "ttfa_p50_s": round(statistics.median(ttfa), 3),
        "ttfa_p95_s": round(_percentile(ttfa, 0.95), 3),
        **_breakdown(before, _device_time(runner)),
    }


def median_figures(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over repeated runs of one level."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def t3_bound_ratio(one: dict[str, float], four: dict[str, float]) -> float | None:
    """throughput_ratio_4 as it would be if token-to-wave cost nothing: each level's audio over
    its T3 time alone (prefill + batched steps), from the same run. An upper bound on what
    batching T3 can give on this device."""
    t3_one = one.get("prefill_s", 0.0) + one.get("decode_s", 0.0)
    t3_four = four.get("prefill_s", 0.0) + four.get("decode_s", 0.0)
    if not t3_one or not t3_four:
        return None
    return round((four["audio_s"] / t3_four) / (one["audio_s"] / t3_one), 3)


def _plot(figures: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, style in (("batched", "o-"), ("unshared", "^:"), ("serial", "s--")):
        rows = figures.get(mode)
        if not rows:
            continue
        xs = [r["streams"] for r in rows]
        left.plot(xs, [r["throughput"] for r in rows], style, label=mode)
        right.plot(xs, [r["ttfa_p95_s"] for r in rows], style, label=f"{mode} p95")
        right.plot(xs, [r["ttfa_p50_s"] for r in rows], style, alpha=0.5, label=f"{mode} p50")
    left.set(
        xlabel="concurrent streams",
        ylabel="audio seconds / wall second",
        title="Aggregate throughput",
        xticks=list(LEVELS),
    )
    right.set(
        xlabel="concurrent streams",
        ylabel="seconds",
        title="Time to first audio",
        xticks=list(LEVELS),
    )
    for axis in (left, right):
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle(
        f"{figures['device']}, {figures['tokens']} tokens per stream, "
        f"median of {figures['repeats']} runs"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ckpt-dir", type=Path)
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--repeats", type=int, default=3, help="runs per level (medians)")
    parser.add_argument(
        "--modes", default="batched,serial", help="of batched, unshared (no shared flow), serial"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    modes = args.modes.split(",")

    ckpt = args.ckpt_dir or random_checkpoint(ModelVariant.TURBO)
    # As in the worker, one thread loads the model and runs all of its work.
    device = DeviceThread()
    model = device.run(lambda: load_model(ModelVariant.TURBO, ckpt, args.device))
    engine = StreamingEngine(model, EngineConfig(watermark=False))

    async def run_all() -> dict[str, list[dict[str, float]]]:
        make: dict[str, Callable[[], EngineRunner]] = {
            "batched": lambda: BatchedRunner(engine, max(levels), device),
            # The same without shared flow calls, to see what they change in one run.
            "unshared": lambda: BatchedRunner(engine, max(levels), device, False),
            "serial": lambda: SerialRunner(engine, device),
        }
        runners = {mode: make[mode]() for mode in modes}
        out: dict[str, list[dict[str, float]]] = {mode: [] for mode in runners}
        # Every runner has served the voice before (as a running server has): kernels are
        # warm and the batch holds the voice's conditioning prefill.
        for runner in runners.values():
            await _one_stream(runner, 1, 20, time.perf_counter())
        runs: dict[tuple[str, int], list[dict[str, float]]] = {}
        # Repeats go round every level in turn, so a noisy minute spoils one run of each
        # figure, not all runs of one.
        for _ in range(args.repeats):
            for streams in levels:
                for mode, runner in runners.items():
                    figures = await _level(runner, streams, args.tokens)
                    runs.setdefault((mode, streams), []).append(figures)
                    print(mode, figures, flush=True)
        for (mode, _streams), measured in runs.items():
            out[mode].append(median_figures(measured))
        for runner in runners.values():
            runner.close()
        device.close()
        return out

    results = asyncio.run(run_all())
    figures: dict[str, Any] = {
        "device": args.device,
        "tokens": args.tokens,
        "repeats": args.repeats,
        **results,
    }
    by_streams = {r["streams"]: r for r in results.get("batched", [])}
    if 1 in by_streams and 4 in by_streams:
        figures["throughput_ratio_4"] = round(
            by_streams[4]["throughput"] / by_streams[1]["throughput"], 3
        )
        figures["ttfa_p95_ratio_4"] = round(
            by_streams[4]["ttfa_p95_s"] / by_streams[1]["ttfa_p95_s"], 3
        )
        bound = t3_bound_ratio(by_streams[1], by_streams[4])
        if bound is not None:
            figures["t3_bound_throughput_ratio_4"] = bound
    print(json.dumps({k: v for k, v in figures.items() if "ratio" in k}))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if args.plot:
        _plot(figures, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
