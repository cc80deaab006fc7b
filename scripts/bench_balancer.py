"""What the balancer adds to a stream, next to no proxy at all and to nginx `least_conn`.

    .venv/bin/python scripts/bench_balancer.py [--levels 1,100,500] [--json out.json]

Starts two fake workers that send one audio event every 100 ms (100 ms of 24 kHz 16-bit PCM,
base64, like the real worker), the balancer (`python -m balancer`) and nginx (Debian package;
its own config in a temporary directory, loopback only) and, as the floor for any proxy written
in Python, a bare asyncio TCP relay (no HTTP at all), all on this machine. For each number of
concurrent streams it runs the same streams straight to the workers, through the balancer,
through nginx and through the relay, and measures:

- time to first event: from sending the request to reading the first audio event;
- per-event latency: from the worker writing an event (its timestamp is in the event) to the
  client reading it. Through a proxy minus direct is the latency the proxy adds.

Concurrent streams start at random times within one second; each measured run follows an
unmeasured warm-up run at the same concurrency (a long-running proxy has its upstream
connections open already).

The fake workers and the client are plain asyncio (no HTTP framework), so that what is measured
is the proxies, not the test harness. Everything shares the machine's cores, so the figures are
only comparable within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EVENT_INTERVAL_S = 0.1
CHUNK_BYTES = 4800  # 100 ms of 24 kHz 16-bit mono PCM
CHUNKS_PER_STREAM = 30  # 3 s streams
SINGLE_STREAM_ROUNDS = 20  # at one stream, run this many one after another
START_SPREAD_S = 1.0  # concurrent streams start at random times within this window
WARMUP_CHUNKS = 3  # an unmeasured run before each measured one
WORKER_CAPACITY = 10_000  # the fake workers never refuse: the proxies are what is measured
OPEN_FILES = 65536
GOAL_ADDED_P50_MS = 2.0
GOAL_STREAMS = 500
GOAL_NGINX_RATIO = 1.5
# "tcp-relay" is a reference, not a product: the least any Python proxy can add (see run_relay).
TARGETS = ("direct", "balancer", "nginx", "tcp-relay")
EVENT_RE = re.compile(rb'"chunk_id": (\d+), "sent_ns": (\d+)')


# --- the fake worker ------------------------------------------------------------------------


class FakeWorker:
    """HTTP/1.1 keep-alive server: `GET /health`, `POST /synthesize-stream` (chunked SSE)."""

    def __init__(self, interval: float, chunks: int, chunk_bytes: int):
        self.interval = interval
        self.chunks = chunks
        self.payload = base64.b64encode(os.urandom(chunk_bytes)).decode()
        self.active = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                headers = dict(
                    (k.strip().lower(), v.strip())
                    for k, _, v in (line.partition(":") for line in header_lines if line)
                )
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if target.startswith("/health"):
                    await self.health(writer)
                elif method == "POST" and target.startswith("/synthesize-stream"):
                    match = re.search(rb"chunks=(\d+)", body)
                    await self.stream(writer, int(match.group(1)) if match else self.chunks)
                else:
                    writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def health(self, writer: asyncio.StreamWriter) -> None:
        body = json.dumps(
            {
                "status": "ready",
                "model": "bench",
                "device": "cpu",
                "active_streams": self.active,
                "queued": 0,
                "capacity": WORKER_CAPACITY,
                "max_queue": 0,
                "uptime_s": 0,
            }
        ).encode()
        head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        writer.write(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()

    async def stream(self, writer: asyncio.StreamWriter, chunks: int) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"cache-control: no-store\r\nx-accel-buffering: no\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        self.active += 1
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            for chunk_id in range(1, chunks + 1):
                # A fixed schedule, so a slow write does not push every later event back.
                await asyncio.sleep(max(0.0, start + chunk_id * self.interval - loop.time()))
                event = (
                    f'event: audio_chunk\r\ndata: {{"chunk_id": {chunk_id}, '
                    f'"sent_ns": {time.monotonic_ns()}, "audio_chunk": "{self.payload}"}}\r\n\r\n'
                ).encode()
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
            done = f'event: done\r\ndata: {{"total_chunks": {chunks}}}\r\n\r\n'.encode()
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
            await writer.drain()
        finally:
            self.active -= 1


async def run_worker(port: int, interval: float, chunks: int, chunk_bytes: int) -> None:
    worker = FakeWorker(interval, chunks, chunk_bytes)
    server = await asyncio.start_server(worker.serve, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# --- the floor: a bare byte relay in Python -----------------------------------------------


async def run_relay(port: int, upstream_ports: Sequence[int]) -> None:
    """A TCP relay (no HTTP at all: bytes in, bytes out, each connection to the next port in
    turn) on the same asyncio loop: what any Python proxy pays per event at the least."""
    turn = itertools.cycle(upstream_ports)

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            sink.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", next(turn))
        for sock in (writer, up_writer):
            sock.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# --- the client -----------------------------------------------------------------------------


@dataclass
class StreamOutcome:
    ttfe_s: float | None = None
    latencies_s: list[float] = field(default_factory=list)
    error: str | None = None


async def one_stream(port: int, chunks: int, delay: float) -> StreamOutcome:
    await asyncio.sleep(delay)
    outcome = StreamOutcome()
    writer: asyncio.StreamWriter | None = None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        body = f"text=Hello+there.&chunks={chunks}".encode()
        sent = time.monotonic_ns()
        writer.write(
            b"POST /synthesize-stream HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            b"content-type: application/x-www-form-urlencoded\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            outcome.error = f"HTTP {status.decode()}"
            return outcome
        if b"transfer-encoding: chunked" not in head.lower():
            outcome.error = "not chunked"
            return outcome
        buffer, expected, done = b"", 1, False
        while not done:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            if size == 0:
                break
            data = await reader.readexactly(size + 2)
            received = time.monotonic_ns()
            buffer += data[:-2]
            *events, buffer = buffer.split(b"\r\n\r\n")
            for event in events:
                if event.startswith(b"event: done"):
                    done = True
                    continue
                match = EVENT_RE.search(event, 0, 200)
                if match is None:
                    continue  # a keep-alive comment
                chunk_id, sent_ns = int(match.group(1)), int(match.group(2))
                if chunk_id != expected:
                    outcome.error = f"chunk {chunk_id} where {expected} was due"
                    return outcome
                expected += 1
                if outcome.ttfe_s is None:
                    outcome.ttfe_s = (received - sent) / 1e9
                outcome.latencies_s.append((received - sent_ns) / 1e9)
        if not done or expected != chunks + 1:
            outcome.error = f"stream ended after {expected - 1} of {chunks} chunks"
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.close()
    return outcome


@dataclass
class Measurement:
    target: str
    streams: int
    errors: int
    error_examples: list[str]
    events: int
    ttfe_p50_ms: float
    ttfe_p95_ms: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    latency_max_ms: float


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def measure(target: str, ports: Sequence[int], streams: int, chunks: int) -> Measurement:
    rng = random.Random(streams)
    outcomes: list[StreamOutcome] = []
    if streams == 1:
        for i in range(SINGLE_STREAM_ROUNDS):
            outcomes.append(await one_stream(ports[i % len(ports)], chunks, 0.0))
    else:
        outcomes = await asyncio.gather(
            *(
                one_stream(ports[i % len(ports)], chunks, rng.uniform(0, START_SPREAD_S))
                for i in range(streams)
            )
        )
    errors = [o.error for o in outcomes if o.error]
    ttfe = [o.ttfe_s for o in outcomes if o.ttfe_s is not None]
    latencies = [lat for o in outcomes for lat in o.latencies_s]
    ms = 1000.0
    return Measurement(
        target=target,
        streams=streams,
        errors=len(errors),
        error_examples=sorted(set(errors))[:3],
        events=len(latencies),
        ttfe_p50_ms=pct(ttfe, 50) * ms,
        ttfe_p95_ms=pct(ttfe, 95) * ms,
        latency_p50_ms=pct(latencies, 50) * ms,
        latency_p95_ms=pct(latencies, 95) * ms,
        latency_p99_ms=pct(latencies, 99) * ms,
        latency_max_ms=max(latencies, default=float("nan")) * ms,
    )


# --- the processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def raise_open_file_limit() -> None:
    """Each stream is two or three sockets per process; children inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer")
        time.sleep(0.1)


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
worker_rlimit_nofile {open_files};
events {{ worker_connections 16384; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream workers {{
        least_conn;
{servers}
        keepalive 1024;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://workers;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


@contextlib.contextmanager
def processes(worker_count: int, chunks: int, chunk_bytes: int) -> Iterator[dict[str, Any]]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is needed as the reference: apt-get install -y nginx")
    tmp = Path(tempfile.mkdtemp(prefix="bench-balancer-"))
    started: list[subprocess.Popen[bytes]] = []
    try:
        worker_ports = [free_port() for _ in range(worker_count)]
        for port in worker_ports:
            argv = [sys.executable, str(Path(__file__).resolve()), "worker", "--port", str(port)]
            argv += ["--chunks", str(chunks), "--chunk-bytes", str(chunk_bytes)]
            started.append(subprocess.Popen(argv))
        for port in worker_ports:
            wait_http(f"http://127.0.0.1:{port}/health")
        balancer_port = free_port()
        workers = ",".join(f"http://127.0.0.1:{p}" for p in worker_ports)
        log = (tmp / "balancer.log").open("wb")
        started.append(
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "balancer", "--workers", workers),
                    *("--host", "127.0.0.1", "--port", str(balancer_port)),
                    *("--static-dir", "", "--log-level", "warning"),
                ],
                cwd=REPO,
                stdout=log,
                stderr=log,
            )
        )
        wait_http(f"http://127.0.0.1:{balancer_port}/health")
        nginx_port = free_port()
        servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=0;" for p in worker_ports)
        conf = tmp / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(tmp=tmp, port=nginx_port, servers=servers, open_files=OPEN_FILES)
        )
        started.append(
            subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "error.log")])
        )
        wait_http(f"http://127.0.0.1:{nginx_port}/health")
        relay_port = free_port()
        relay = [sys.executable, str(Path(__file__).resolve()), "relay", "--port", str(relay_port)]
        started.append(subprocess.Popen([*relay, "--to", ",".join(map(str, worker_ports))]))
        wait_http(f"http://127.0.0.1:{relay_port}/health")
        yield {
            "direct": worker_ports,
            "balancer": [balancer_port],
            "nginx": [nginx_port],
            "tcp-relay": [relay_port],
            "nginx_version": subprocess.run(
                [nginx, "-v"], capture_output=True, text=True, check=False
            ).stderr.strip(),
        }
    finally:
        for process in reversed(started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(tmp, ignore_errors=True)


# --- the report -----------------------------------------------------------------------------


def table(results: list[Measurement]) -> str:
    direct = {m.streams: m for m in results if m.target == "direct"}
    lines = [
        "| streams | path | errors | events | first event p50 / p95 (ms) "
        "| event latency p50 / p95 / p99 / max (ms) | added p50 / p95 (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in results:
        base = direct[m.streams]
        added = (
            "-"
            if m.target == "direct"
            else f"{m.latency_p50_ms - base.latency_p50_ms:+.2f} / "
            f"{m.latency_p95_ms - base.latency_p95_ms:+.2f}"
        )
        lines.append(
            f"| {m.streams} | {m.target} | {m.errors} | {m.events} "
            f"| {m.ttfe_p50_ms:.1f} / {m.ttfe_p95_ms:.1f} "
            f"| {m.latency_p50_ms:.2f} / {m.latency_p95_ms:.2f} / {m.latency_p99_ms:.2f} "
            f"/ {m.latency_max_ms:.1f} | {added} |"
        )
    return "\n".join(lines)


def goals(results: list[Measurement]) -> list[tuple[str, bool, str]]:
    by = {(m.target, m.streams): m for m in results}

    def added(target: str, streams: int) -> float | None:
        if (target, streams) not in by or ("direct", streams) not in by:
            return None
        return by[(target, streams)].latency_p50_ms - by[("direct", streams)].latency_p50_ms

    out: list[tuple[str, bool, str]] = []
    at_100 = added("balancer", 100)
    if at_100 is not None:
        out.append(
            (
                f"p50 added latency <= {GOAL_ADDED_P50_MS:g} ms at 100 streams",
                at_100 <= GOAL_ADDED_P50_MS,
                f"{at_100:.2f} ms",
            )
        )
    held = by.get(("balancer", GOAL_STREAMS))
    if held is not None:
        out.append(
            (
                f"{GOAL_STREAMS} concurrent streams with zero errors",
                held.errors == 0,
                f"{held.errors} errors",
            )
        )
    for streams in sorted({m.streams for m in results}):
        ours, theirs = added("balancer", streams), added("nginx", streams)
        if ours is None or theirs is None:
            continue
        ok = ours <= GOAL_NGINX_RATIO * max(theirs, 0.0)
        out.append(
            (
                f"added p50 within {GOAL_NGINX_RATIO:g}x nginx's at {streams} streams",
                ok,
                f"balancer {ours:+.2f} ms, nginx {theirs:+.2f} ms",
            )
        )
    return out


async def run_levels(
    ports: dict[str, Any], levels: Sequence[int], chunks: int
) -> list[Measurement]:
    results = []
    for streams in levels:
        for target in TARGETS:
            # Warm up: a long-running proxy has its upstream connections open already.
            await measure(target, ports[target], streams, WARMUP_CHUNKS)
            await asyncio.sleep(0.5)
            m = await measure(target, ports[target], streams, chunks)
            print(
                f"{streams:4d} streams {target:8s} errors={m.errors} events={m.events} "
                f"ttfe p50={m.ttfe_p50_ms:.1f} ms latency p50={m.latency_p50_ms:.2f} "
                f"p95={m.latency_p95_ms:.2f} ms",
                flush=True,
            )
            results.append(m)
            await asyncio.sleep(0.5)  # let connections close before the next run
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("worker", help="run one fake worker (used by the benchmark itself)")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--interval", type=float, default=EVENT_INTERVAL_S)
    serve.add_argument("--chunks", type=int, default=CHUNKS_PER_STREAM)
    serve.add_argument("--chunk-bytes", type=int, default=CHUNK_BYTES)
    relay = sub.add_parser("relay", help="run the bare TCP relay (used by the benchmark itself)")
    relay.add_argument("--port", type=int, required=True)
    relay.add_argument("--to", required=True, help="upstream ports, comma-separated")
    parser.add_argument("--levels", default="1,100,500", help="concurrent streams, comma-separated")
    parser.add_argument("--chunks", type=int, default=CHUNKS_PER_STREAM, help="events per stream")
    parser.add_argument("--chunk-bytes", type=int, default=CHUNK_BYTES)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.command == "worker":
        asyncio.run(run_worker(args.port, args.interval, args.chunks, args.chunk_bytes))
        return 0
    if args.command == "relay":
        asyncio.run(run_relay(args.port, [int(p) for p in args.to.split(",")]))
        return 0
    raise_open_file_limit()
    levels = [int(x) for x in args.levels.split(",")]
    with processes(args.workers, args.chunks, args.chunk_bytes) as ports:
        print(f"{ports['nginx_version']}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}")
        started = time.time()
        results = asyncio.run(run_levels(ports, levels, args.chunks))
    print()
    print(table(results))
    print()
    verdicts = goals(results)
    for name, ok, detail in verdicts:
        print(f"{'PASS' if ok else 'MISS'}  {name}: {detail}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": " ".join([Path(sys.executable).name, *sys.argv]),
                    "started": started,
                    "load_average_1m": os.getloadavg()[0],
                    "results": [asdict(m) for m in results],
                    "goals": [{"goal": n, "met": ok, "value": d} for n, ok, d in verdicts],
                },
                indent=2,
            )
        )
    return 0 if all(ok for _, ok, _ in verdicts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
