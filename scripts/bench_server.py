"""The worker over HTTP on this machine, in one run:

1. time to the first `audio_chunk` event of `/synthesize-stream` vs the total time of
   `/synthesize`, same text and seed, real engine (a worker process started by the script);
2. the HTTP layer's cost: time to first audio over HTTP minus calling the engine directly.
   With the real engine both sides carry seconds of model time and its noise, so the layer is
   also measured alone, over the fast fake engine (first chunk ready at once), many times.

    python scripts/bench_server.py [--ckpt-dir DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench_streaming import DEFAULT_TEXT, TOKENS_FOR_10_S, report  # noqa: E402
from tests.sse import iter_events  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process(args: list[str], url: str, timeout: float = 300) -> Iterator[None]:
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{url}/health").json()["status"] == "ready":
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{args} did not become ready")
            time.sleep(0.2)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


# One client for the whole run: a new httpx client per request costs milliseconds of its own
# (TLS context, pool), which would be charged to the server.
CLIENT = httpx.Client(timeout=600)


def stream_once(url: str, form: dict[str, str]) -> tuple[float, float]:
    """(time to first audio_chunk event, time to `done`), measured by the client."""
    started = time.perf_counter()
    first = 0.0
    with CLIENT.stream("POST", f"{url}/synthesize-stream", data=form) as response:
        for event in iter_events(response):
            if event.event == "audio_chunk" and not first:
                first = time.perf_counter() - started
            if event.event in ("done", "error"):
                assert event.event == "done", event.data
    return first, time.perf_counter() - started


def regular_once(url: str, form: dict[str, str]) -> float:
    started = time.perf_counter()
    response = CLIENT.post(f"{url}/synthesize", data=form)
    response.raise_for_status()
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ckpt-dir", type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--fake-requests", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    python = str(ROOT / ".venv" / "bin" / "python")
    form = {"text": DEFAULT_TEXT, "seed": "42", "max_new_tokens": str(TOKENS_FOR_10_S)}
    env_ckpt = ["--ckpt-dir", str(args.ckpt_dir)] if args.ckpt_dir else ["--random-weights"]

    # 1 and 2a. The real engine over HTTP (a worker process) and called directly (in this
    # process), requests alternating so both see the same machine conditions.
    from server.engine.__main__ import random_checkpoint
    from server.engine.engine import EngineConfig, StreamingEngine, SynthesisRequest
    from server.engine.loading import ModelVariant, load_model
    from server.forms import default_params

    ckpt = args.ckpt_dir or random_checkpoint(ModelVariant.TURBO)
    engine = StreamingEngine(load_model(ModelVariant.TURBO, ckpt, "cpu"), EngineConfig())
    request = SynthesisRequest(
        DEFAULT_TEXT, default_params(ModelVariant.TURBO), seed=42, max_new_tokens=TOKENS_FOR_10_S
    )
    list(engine.stream(SynthesisRequest("Warm up.", seed=1, max_new_tokens=20)))

    def direct_ttfa_once() -> float:
        started = time.perf_counter()
        stream = engine.stream(request)
        next(stream)
        seconds = time.perf_counter() - started
        stream.close()
        return seconds

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    worker = [python, "-m", "server", "--port", str(port), "--log-level", "warning", *env_ckpt]
    http_ttfa, stream_total, regular_total, direct_ttfa = [], [], [], []
    with process(worker, url):
        stream_once(url, form | {"max_new_tokens": "20"})  # warm-up
        regular_once(url, form | {"max_new_tokens": "20"})
        for _ in range(args.repeats):
            first, total = stream_once(url, form)
            http_ttfa.append(first)
            stream_total.append(total)
            direct_ttfa.append(direct_ttfa_once())
            regular_total.append(regular_once(url, form))

    # 2b. The HTTP layer alone: the real worker app over the fake engine, first chunk at once.
    from tests.fakes import FakeEngine

    fake = FakeEngine(delay=0.0, chunks=2)
    fake_direct = []
    for _ in range(args.fake_requests):
        started = time.perf_counter()
        next(fake.stream(SynthesisRequest("Hello.")))
        fake_direct.append(time.perf_counter() - started)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    fake_worker = [
        python,
        "-m",
        "tests.fake_worker",
        "--port",
        str(port),
        "--delay",
        "0",
        "--chunks",
        "2",
    ]
    with process(fake_worker, url, timeout=60):
        for _ in range(20):
            stream_once(url, {"text": "Hello."})
        fake_http = [stream_once(url, {"text": "Hello."})[0] for _ in range(args.fake_requests)]

    med = statistics.median
    figures = {
        "http_ttfa_s": round(med(http_ttfa), 3),
        "http_stream_total_s": round(med(stream_total), 3),
        "http_regular_total_s": round(med(regular_total), 3),
        "http_ttfa_ratio": round(med(http_ttfa) / med(regular_total), 4),
        "direct_ttfa_s": round(med(direct_ttfa), 3),
        "real_engine_http_overhead_ms": round((med(http_ttfa) - med(direct_ttfa)) * 1000, 1),
        "http_layer_overhead_p50_ms": round(
            (percentile(fake_http, 0.5) - percentile(fake_direct, 0.5)) * 1000, 2
        ),
        "http_layer_overhead_p95_ms": round(
            (percentile(fake_http, 0.95) - percentile(fake_direct, 0.5)) * 1000, 2
        ),
        "repeats": args.repeats,
        "fake_requests": args.fake_requests,
        "cpu_count": os.cpu_count(),
    }
    report(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
