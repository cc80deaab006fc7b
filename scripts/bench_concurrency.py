"""Concurrent streams on one device: batched T3 decoding vs one stream at a time, in one run.

For 1, 2, 4 and 8 concurrent streams (all submitted at once, each `--tokens` speech tokens;
each level run `--repeats` times, medians reported), prints aggregate generated audio seconds
per wall second and time to first audio p50/p95, for the batch scheduler and for the serial
baseline. With --json writes the figures, including `throughput_ratio_4` (4-stream batched
throughput / single-stream throughput) and `t3_bound_throughput_ratio_4` (the same ratio
counting only T3's time, i.e. what it would be if token-to-wave were free: the ceiling that
batching T3 can reach on this device); with --plot a PNG of throughput and time to first audio
against concurrency.

    python scripts/bench_concurrency.py [--model turbo|original|multilingual] [--ckpt-dir DIR]
        [--baseline-ckpt-dir DIR] [--language en] [--device cuda:0] [--dtype bfloat16]
        [--json out.json] [--plot out.png]

--model other than turbo (the default) measures Turbo first, as the baseline, then that model,
one model in memory at a time, each with upstream's sampling defaults for it, and prints the
figures side by side (one column per model); --json then writes {"device", "dtype", "tokens",
"repeats", "baseline": "turbo", "model", "models": {"turbo": {...}, ...}}, each model's figures
(its modes' rows and ratios) as a Turbo-only run writes them at the top level. --ckpt-dir is
the checkpoint of --model, --baseline-ckpt-dir Turbo's when it is the baseline (default: the
full-size random-weight checkpoints); --language is the multilingual model's (the others speak
English only).
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

from scripts.bench_streaming import (
    add_model_options,
    compared_models,
    parse_model_options,
    side_by_side,
)
from server.engine.__main__ import random_checkpoint
from server.engine.batch_scheduler import DeviceTime
from server.engine.device_thread import DeviceThread
from server.engine.engine import (
    SAMPLE_RATE,
    EngineConfig,
    StreamingEngine,
    SynthesisRequest,
)
from server.engine.loading import ModelVariant, default_dtype, load_model
from server.engine.memory import give_memory_back
from server.engine.runners import BatchedRunner, EngineRunner, SerialRunner
from server.engine.sampling import SamplingParams
from server.engine.schema import DEFAULT_LANGUAGE
from server.forms import default_params

LEVELS = (1, 2, 4, 8)
TEXT = "Several listeners are waiting for their own sentences at the very same time."


@dataclasses.dataclass(frozen=True)
class Asked:
    """What every stream asks of the model measured: upstream `generate`'s sampling defaults
    for it (as the server gives them), in its language."""

    params: SamplingParams
    language: str

    @classmethod
    def of(cls, variant: ModelVariant, language: str) -> Asked:
        # Only the multilingual model speaks other languages than the default.
        spoken = language if variant is ModelVariant.MULTILINGUAL else DEFAULT_LANGUAGE
        return cls(default_params(variant), spoken)

    def request(self, seed: int, tokens: int, started: float) -> SynthesisRequest:
        return SynthesisRequest(
            TEXT,
            self.params,
            seed=seed,
            max_new_tokens=tokens,
            started_at=started,
            language=self.language,
        )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _one_stream(
    runner: EngineRunner, asked: Asked, seed: int, tokens: int, started: float
) -> tuple[float, float]:
    request = asked.request(seed, tokens, started)
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


async def _level(runner: EngineRunner, asked: Asked, streams: int, tokens: int) -> dict[str, float]:
    before = _device_time(runner)
    started = time.perf_counter()
    results = await asyncio.gather(
        *(_one_stream(runner, asked, 100 + i, tokens, started) for i in range(streams))
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
    # One model's rows at the top level, or several models' side by side.
    columns: dict[str, dict[str, Any]] = figures.get("models", {"": figures})
    for model, measured in columns.items():
        for mode, style in (("batched", "o-"), ("unshared", "^:"), ("serial", "s--")):
            rows = measured.get(mode)
            if not rows:
                continue
            name = f"{model} {mode}".strip()
            xs = [r["streams"] for r in rows]
            left.plot(xs, [r["throughput"] for r in rows], style, label=name)
            right.plot(xs, [r["ttfa_p95_s"] for r in rows], style, label=f"{name} p95")
            right.plot(xs, [r["ttfa_p50_s"] for r in rows], style, alpha=0.5, label=f"{name} p50")
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
        f"{figures['device']} ({figures['dtype']}), {figures['tokens']} tokens per stream, "
        f"median of {figures['repeats']} runs"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def ratios(results: dict[str, list[dict[str, float]]]) -> dict[str, float]:
    """The batch scheduler's 4-stream figures over its 1-stream ones, where both were run."""
    by_streams = {r["streams"]: r for r in results.get("batched", [])}
    if 1 not in by_streams or 4 not in by_streams:
        return {}
    one, four = by_streams[1], by_streams[4]
    out = {
        "throughput_ratio_4": round(four["throughput"] / one["throughput"], 3),
        "ttfa_p95_ratio_4": round(four["ttfa_p95_s"] / one["ttfa_p95_s"], 3),
    }
    bound = t3_bound_ratio(one, four)
    if bound is not None:
        out["t3_bound_throughput_ratio_4"] = bound
    return out


def measure(
    variant: ModelVariant, ckpt_dir: Path | None, args: argparse.Namespace
) -> dict[str, Any]:
    """One model's rows per mode and its ratios: loads it, runs every level and lets it go
    (the caller collects it)."""
    levels = [int(x) for x in args.levels.split(",")]
    modes = args.modes.split(",")
    ckpt = ckpt_dir or random_checkpoint(variant)
    asked = Asked.of(variant, args.language)
    # As in the worker, one thread loads the model and runs all of its work.
    device = DeviceThread()
    dtype = args.dtype or default_dtype(args.device)
    model = device.run(lambda: load_model(variant, ckpt, args.device, dtype=dtype.torch_dtype))
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
            await _one_stream(runner, asked, 1, 20, time.perf_counter())
        runs: dict[tuple[str, int], list[dict[str, float]]] = {}
        # Repeats go round every level in turn, so a noisy minute spoils one run of each
        # figure, not all runs of one.
        for _ in range(args.repeats):
            for streams in levels:
                for mode, runner in runners.items():
                    figures = await _level(runner, asked, streams, args.tokens)
                    runs.setdefault((mode, streams), []).append(figures)
                    print(mode, figures, flush=True)
        for (mode, _streams), measured in runs.items():
            out[mode].append(median_figures(measured))
        for runner in runners.values():
            runner.close()
        device.close()
        return out

    results = asyncio.run(run_all())
    return {**results, **ratios(results)}


def table_rows(measured: dict[str, Any]) -> dict[str, Any]:
    """One model's figures as flat rows: `mode figure @streams`, then the ratios."""
    rows: dict[str, Any] = {}
    for key, value in measured.items():
        if not isinstance(value, list):
            rows[key] = value
            continue
        for level in value:
            for figure, number in level.items():
                if figure != "streams":
                    rows[f"{key} {figure} @{level['streams']}"] = number
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    add_model_options(parser)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--repeats", type=int, default=3, help="runs per level (medians)")
    parser.add_argument(
        "--modes", default="batched,serial", help="of batched, unshared (no shared flow), serial"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parse_model_options(parser, argv)

    columns: dict[str, dict[str, Any]] = {}
    variants = compared_models(args.model)
    for variant in variants:
        if len(variants) > 1:
            print(f"--- {variant}", flush=True)
        ckpt_dir = args.ckpt_dir if variant is args.model else args.baseline_ckpt_dir
        columns[variant.value] = measure(variant, ckpt_dir, args)
        give_memory_back()

    dtype = args.dtype or default_dtype(args.device)
    figures: dict[str, Any] = {
        "device": args.device,
        "dtype": dtype.value,
        "tokens": args.tokens,
        "repeats": args.repeats,
    }
    if len(columns) == 1:
        # Turbo alone: its figures at the top level, as gpu_check.sh reads them.
        (measured,) = columns.values()
        figures.update(measured)
        print(json.dumps({k: v for k, v in measured.items() if "ratio" in k}))
    else:
        print(side_by_side({model: table_rows(measured) for model, measured in columns.items()}))
        baseline, *others = columns
        figures.update(baseline=baseline, model=others[-1], models=columns)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if args.plot:
        _plot(figures, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
