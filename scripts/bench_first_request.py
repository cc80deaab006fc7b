"""The first requests after a worker starts, against the ones after them.

Starts a real worker process (random Turbo weights unless --ckpt-dir), waits until its
/health says ready, then times, in turn: the first `/synthesize-stream` (time to its first
audio event), the first `/synthesize` (total), then `--repeats` more of each. Without the
worker's warm-up the first of each pays one-time costs (lazy initialisation, first kernels);
with it they cost what the later ones do. Beside the wall time, the worker's CPU time for
each request (from /proc): on a machine shared with other work, wall times swing with the
load, while the extra work of a first request shows in either (`--threads 1` keeps idle
OpenMP threads from spinning, so that the CPU time counts work only).

    python scripts/bench_first_request.py [--ckpt-dir DIR] [--repeats 3] [--threads N]
        [-- worker flags]    e.g. `-- --no-warmup` for the figures without the warm-up
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench_server import free_port, regular_once, stream_once  # noqa: E402

FORM = {"text": "The first request after a start.", "seed": "1", "max_new_tokens": "40"}
READY_TIMEOUT_S = 600


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process `pid` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, request: Callable[[], float]) -> tuple[float, float]:
    """(the request's own figure in s, the worker's CPU seconds meanwhile)."""
    before = cpu_seconds(pid)
    seconds = request()
    return seconds, cpu_seconds(pid) - before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ckpt-dir", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="the worker's OMP_NUM_THREADS")
    parser.add_argument("worker_flags", nargs="*", help="after --: extra worker flags")
    args = parser.parse_args(argv)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    weights = ["--ckpt-dir", str(args.ckpt_dir)] if args.ckpt_dir else ["--random-weights"]
    worker = [sys.executable, "-m", "server", "--port", str(port), "--device", "cpu"]
    worker += ["--log-level", "warning", *weights, *args.worker_flags]
    started = time.perf_counter()
    env = dict(os.environ)
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = str(args.threads)
    proc = subprocess.Popen(worker, cwd=ROOT, stdout=subprocess.DEVNULL, env=env)
    try:
        while True:
            try:
                if httpx.get(f"{url}/health").json()["status"] == "ready":
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.perf_counter() - started > READY_TIMEOUT_S:
                raise RuntimeError("the worker did not become ready")
            time.sleep(0.2)
        ready_s = time.perf_counter() - started
        stream = measured(proc.pid, lambda: stream_once(url, FORM)[0])
        regular = measured(proc.pid, lambda: regular_once(url, FORM))
        streams = [
            measured(proc.pid, lambda: stream_once(url, FORM)[0]) for _ in range(args.repeats)
        ]
        regulars = [
            measured(proc.pid, lambda: regular_once(url, FORM)) for _ in range(args.repeats)
        ]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)

    def later(figures: list[tuple[float, float]], index: int) -> str:
        values = [f[index] for f in figures]
        listed = ", ".join(f"{v:.2f}" for v in values)
        return f"{statistics.median(values):6.2f} s (median of {len(values)}: {listed})"

    flags = " ".join(args.worker_flags) or "(none)"
    print(
        f"worker flags: {flags}; threads: {args.threads or 'default'}; ready after {ready_s:.1f} s"
    )
    print(f"first stream, first audio:     {stream[0]:6.2f} s, worker CPU {stream[1]:6.2f} s")
    print(f"later streams, first audio:    {later(streams, 0)}")
    print(f"               worker CPU:     {later(streams, 1)}")
    print(f"first regular synthesis:       {regular[0]:6.2f} s, worker CPU {regular[1]:6.2f} s")
    print(f"later regular syntheses:       {later(regulars, 0)}")
    print(f"               worker CPU:     {later(regulars, 1)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
