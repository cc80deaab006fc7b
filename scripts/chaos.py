"""Chaos: streams through the balancer while workers are killed, then a rolling restart.

    .venv/bin/python scripts/chaos.py [--minutes 10] [--streams 30] [--kill-every 20]
        [--workers 3] [--real] [--seed 1] [--logs DIR] [--json [PATH]]

Runs the real deployment (`python -m deployment`, what `start_streaming_servers.sh` runs: the
supervisor, the balancer and its workers) on loopback, with fake workers (`--worker-module
tests.fake_worker`: the real worker app over a fake engine) or, with `--real`, random-weight
workers (a short run: 2 workers, 1 stream, 3 minutes, a kill a minute). Clients keep
`--streams` `/synthesize-stream` requests going through the balancer, back to back, and:

1. warm up (no kills), then sample the balancer's memory (RSS) and descriptors, idle;
2. for `--minutes`, every `--kill-every` seconds (on average), SIGKILL a random worker among
   those in rotation that serve streams (none while fewer than two are in rotation: there
   would be nowhere to fail over to); the supervisor restarts it (`--restart-limit 1000`: see
   RESTART_LIMIT);
3. once every worker is back, SIGHUP the supervisor: a rolling restart under the same load;
4. stop the clients and sample the balancer again, idle.

Every stream's chunk ids must be 1..n in order, as many as its `done` event says. Each request
ends as one of: completed; not served (no 200 from the balancer: a worker's 503 passed on, so
every worker tried was full; the balancer's own 503; a connection error); an SSE `error`
event (on a worker killed while the stream ran, or not; before any audio, or after); hung (no
event, keep-alive pings aside, for 30 s); cut off (the body ended with neither `done` nor
`error`). Which worker served a request is the balancer's `x-upstream-worker` header; the
requests it moved to another worker before their first byte are its `/stats` `failovers`.
The goals are printed as met or NOT MET; the exit status is 1 unless all are met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

import httpx

from balancer.downstream import MOVED_COMMENT
from balancer.upstream import CLIENT_SHARDS, KEEPALIVE_EXPIRY_S

REPO = Path(__file__).resolve().parents[1]

DEFAULT_MINUTES = 10.0
DEFAULT_STREAMS = 30
DEFAULT_KILL_EVERY_S = 20.0
DEFAULT_WORKERS = 3
# Random-weight workers on a CPU: a restart loads the model and warms up (tens of seconds), and
# a few streams fill the machine.
REAL_MINUTES = 3.0
REAL_STREAMS = 1  # 2 or 3 on two workers left first audio waiting over 30 s on 2 cores
REAL_KILL_EVERY_S = 60.0
REAL_WORKERS = 2
WARMUP_S = 10.0
# The gap before each kill: --kill-every times a factor drawn from this range (so, on average,
# --kill-every). Fixed gaps fell at the same point of streams that repeat in step with them
# (one real stream of 15 s, a kill every 60 s: every kill came as a stream was starting).
KILL_GAP_JITTER = (0.5, 1.5)
MOVED = MOVED_COMMENT.decode().lstrip(":").strip()  # the comment, as sse_events gives it
HUNG_AFTER_S = 30.0  # no event (pings aside) for this long: the stream hangs
# Fake streams of 2 s: 20 chunks of 0.2 s of audio, one every 0.1 s (twice real time).
FAKE_WORKER_FLAGS = ("--chunks", "20", "--delay", "0.1")
# Real streams: short text, a few chunks (random weights never stop on their own).
REAL_FORM = {"text": "Hello there, this is a chaos test.", "max_new_tokens": "75"}
REAL_FORM_CHUNK_SIZE = "25"
FAKE_FORM = {"text": "Hello there, this is a chaos test."}
# Each kill is ours, not a crash loop: with the default limit (5 fast failures in a row, a run
# healthy under a minute being fast) a worker hit a few times in a row would be given up on.
RESTART_LIMIT = 1000
# For a rolling restart, and for every worker to be in rotation again before it. A random-weight
# worker loading next to one serving took 90-270 s on 2 cores.
FAKE_RESTART_TIMEOUT_S = 300.0
REAL_RESTART_TIMEOUT_S = 900.0
TAIL_S = 3.0  # load after the rolling restart is done
# The idle samples: past the keep-alive of every idle connection (the balancer's upstream pools
# expire theirs after KEEPALIVE_EXPIRY_S, uvicorn closes a client's after 5 s), then one
# request through each of the balancer's upstream pools (twice around), so each has dropped its
# expired connections and holds at most one: the count no longer depends on the load before.
SETTLE_S = max(KEEPALIVE_EXPIRY_S, 5.0) + 1.0
FLUSH_REQUESTS = 2 * CLIENT_SHARDS
# Flat: the idle samples at the end within this of the ones at the start (after the warm-up,
# so connection pools and caches are already there).
RSS_TOLERANCE_MIB = 16.0
RSS_TOLERANCE_FRACTION = 0.10
FD_TOLERANCE = 8
SAMPLE_EVERY_S = 5.0
# A client refused waits its Retry-After before the next request, or this without one.
NOT_SERVED_PAUSE_S = 0.5
STOP_TIMEOUT_S = 60.0
EXAMPLES = 5

STARTED_RE = re.compile(r"(?:re)?started the (.+?) on (\S+) \(pid (\d+)")
BACK_RE = re.compile(r"the (.+?) is back \(pid \d+\), healthy after ([\d.]+) s")


class Outcome(StrEnum):
    COMPLETED = "completed"
    NOT_SERVED = "not_served"  # no 200 from the balancer
    ERROR_EVENT = "error_event"
    HUNG = "hung"
    CUT_OFF = "cut_off"  # the body ended with neither `done` nor `error`


@dataclass
class Request:
    phase: str
    started: float  # time.monotonic()
    ended: float = 0.0
    status: int | None = None
    worker: str | None = None  # the balancer's x-upstream-worker
    chunks: int = 0
    pings_before_audio: int = 0
    moves: int = 0  # times the balancer moved the stream to another worker after its headers
    disorder: str | None = None  # chunk ids not 1..n in order, or not as many as `done` said
    outcome: Outcome = Outcome.CUT_OFF
    detail: str = ""
    retry_after: float | None = None  # a refusal's Retry-After

    @property
    def kind(self) -> str:
        """The outcome, finer: how a request was not served, whether an error came before
        any audio."""
        if self.outcome is Outcome.NOT_SERVED:
            if self.status == 503 and self.worker is not None:
                return "refused_every_worker_full"  # a worker's own 503, passed through
            if self.status == 503:
                return "refused_no_worker"  # the balancer's own 503
            return "not_served_other"
        if self.outcome is Outcome.ERROR_EVENT and self.chunks == 0:
            return "error_event_before_first_audio"
        return self.outcome.value


@dataclass(frozen=True)
class Kill:
    at: float
    url: str
    name: str
    pid: int


@dataclass(frozen=True)
class Sample:
    rss_mib: float
    fds: int


@dataclass
class ChaosOptions:
    minutes: float = DEFAULT_MINUTES
    streams: int = DEFAULT_STREAMS
    kill_every: float = DEFAULT_KILL_EVERY_S
    workers: int = DEFAULT_WORKERS
    real: bool = False
    seed: int = 1
    warmup: float = WARMUP_S
    hung_after: float = HUNG_AFTER_S
    worker_flags: tuple[str, ...] = FAKE_WORKER_FLAGS
    # BALANCER_HEALTH_INTERVAL for the balancer (None: its default, 2 s); tests shorten it.
    health_interval: float | None = None


# --- the deployment -------------------------------------------------------------------------


def free_port_run(count: int) -> int:
    """The first of `count` consecutive free ports (the deployment numbers its workers so)."""
    for _ in range(100):
        base = random.randint(20000, 60000 - count)
        if all(_port_free(p) for p in range(base, base + count)):
            return base
    raise RuntimeError("no run of free ports")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Deployment:
    """`python -m deployment` serving our workers; its output says what it started and did."""

    def __init__(self, options: ChaosOptions, work: Path):
        self.options = options
        self.work = work
        worker_port = free_port_run(options.workers)
        port = free_port_run(1)
        while port in range(worker_port, worker_port + options.workers):
            port = free_port_run(1)
        self.balancer = f"http://127.0.0.1:{port}"
        self.workers = [f"http://127.0.0.1:{worker_port + i}" for i in range(options.workers)]
        argv = [sys.executable, "-m", "deployment", "--workers", str(options.workers)]
        argv += ["--worker-port", str(worker_port), "--port", str(port), "--host", "127.0.0.1"]
        argv += ["--log-dir", str(work / "logs"), "--voices-dir", str(work / "voices")]
        argv += ["--restart-limit", str(RESTART_LIMIT)]
        if options.real:
            argv += ["--random-weights"]
        else:
            argv += ["--worker-module", "tests.fake_worker"]
        self.argv = [*argv, "--", *options.worker_flags]
        self.process: asyncio.subprocess.Process | None = None
        self.pids: dict[str, int] = {}  # the latest process of each URL (workers and balancer)
        self.names: dict[str, str] = {}
        self.lines: list[str] = []
        # When a restarted worker (by name) was healthy again.
        self.back: list[tuple[float, str]] = []
        self.up = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._log: TextIO | None = None

    @property
    def balancer_pid(self) -> int | None:
        return self.pids.get(self.balancer)

    def output(self, pattern: str) -> list[str]:
        return [line for line in self.lines if re.search(pattern, line)]

    async def start(self, timeout: float) -> None:
        env = dict(os.environ)
        if self.options.real and "OMP_NUM_THREADS" not in env:
            # Each worker's torch would take every core for itself: N workers on the CPU share
            # them instead (a restarting worker loads next to the ones serving).
            threads = max(1, (os.cpu_count() or 1) // self.options.workers)
            env["OMP_NUM_THREADS"] = str(threads)
        if self.options.health_interval is not None:
            env["BALANCER_HEALTH_INTERVAL"] = str(self.options.health_interval)
        self._log = open(self.work / "supervisor.log", "w")  # noqa: SIM115 (closed in stop)
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=REPO,  # `-m deployment` and `-m tests.fake_worker` are found from here
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: cleaned up whatever happens
        )
        self._reader = asyncio.create_task(self._read())
        exited = asyncio.create_task(self.process.wait())
        up = asyncio.create_task(self.up.wait())
        await asyncio.wait({exited, up}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        up.cancel()
        if not self.up.is_set():
            exited.cancel()
            tail = "".join(self.lines[-30:])
            raise RuntimeError(f"the deployment did not come up:\n{tail}")
        exited.cancel()

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace")
            self.lines.append(line)
            if self._log is not None:
                self._log.write(line)
                self._log.flush()
            if found := STARTED_RE.search(line):
                name, url, pid = found.groups()
                self.pids[url], self.names[url] = int(pid), name
            elif found := BACK_RE.search(line):
                self.back.append((time.monotonic(), found.group(1)))
            elif "Chatterbox streaming is up" in line:
                self.up.set()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def all_back(self, kills: Sequence[Kill]) -> bool:
        """Whether the supervisor said each killed worker was back after its kill."""
        return all(any(n == k.name and at > k.at for at, n in self.back) for k in kills)

    def kill(self, url: str) -> Kill:
        pid = self.pids[url]
        kill = Kill(time.monotonic(), url, self.names[url], pid)
        os.kill(pid, signal.SIGKILL)
        return kill

    def rolling_restart(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    async def wait_output(self, pattern: str, timeout: float, after: int = 0) -> str | None:
        """The first line from `after` on that matches `pattern` (None: not within `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running:
            for line in self.lines[after:]:
                if re.search(pattern, line):
                    return line
            await asyncio.sleep(0.2)
        return None

    async def stop(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)  # workers drain, then the balancer stops
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # anything left of its group
            await process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 5)
        if self._log is not None:
            self._log.close()


def sample(pid: int) -> Sample:
    """The process's resident memory and open file descriptors, from /proc."""
    rss_kib = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
    return Sample(round(rss_kib / 1024, 1), len(os.listdir(f"/proc/{pid}/fd")))


# --- the clients ----------------------------------------------------------------------------


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) for each event; ("", comment) for a comment line (a keep-alive ping)."""
    name, data = "message", list[str]()
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith(":"):
            yield "", line[1:].strip()
        else:
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
    if data:
        yield name, "\n".join(data)


async def one_request(
    client: httpx.AsyncClient, url: str, form: dict[str, str], phase: str, hung_after: float
) -> Request:
    request = Request(phase, time.monotonic())
    loop = asyncio.get_running_loop()
    try:
        async with (
            asyncio.timeout(hung_after) as deadline,
            client.stream("POST", f"{url}/synthesize-stream", data=form) as response,
        ):
            request.status = response.status_code
            request.worker = response.headers.get("x-upstream-worker")
            if response.status_code != 200:
                body = (await response.aread()).decode(errors="replace")
                request.outcome = Outcome.NOT_SERVED
                request.detail = f"HTTP {response.status_code}: {body[:200]}"
                with contextlib.suppress(TypeError, ValueError):
                    request.retry_after = float(response.headers.get("retry-after"))
                return request
            async for event, data in sse_events(response):
                if not event:  # a comment: not a sign of life of the stream itself
                    if data.startswith(MOVED):  # lost before its audio, moved to another
                        request.worker = data.removeprefix(MOVED).strip()
                        request.moves += 1
                    else:  # a keep-alive ping
                        request.pings_before_audio += request.chunks == 0
                    continue
                deadline.reschedule(loop.time() + hung_after)
                if event == "audio_chunk":
                    request.chunks += 1
                    chunk_id = json.loads(data)["chunk_id"]
                    if chunk_id != request.chunks and request.disorder is None:
                        request.disorder = f"chunk {chunk_id} where {request.chunks} was due"
                elif event == "done":
                    total = json.loads(data).get("total_chunks")
                    if total != request.chunks and request.disorder is None:
                        request.disorder = f"done says {total} chunks, {request.chunks} came"
                    request.outcome = Outcome.COMPLETED
                elif event == "error":
                    request.outcome = Outcome.ERROR_EVENT
                    request.detail = str(json.loads(data).get("error", data))[:300]
            if request.outcome is Outcome.CUT_OFF:
                request.detail = f"the body ended after {request.chunks} chunks"
    except TimeoutError:
        request.outcome = Outcome.HUNG
        request.detail = f"no event for {hung_after:g} s after {request.chunks} chunks"
    except httpx.HTTPError as exc:
        served = request.status == 200
        request.outcome = Outcome.CUT_OFF if served else Outcome.NOT_SERVED
        request.detail = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        request.ended = time.monotonic()
    return request


class Load:
    """`streams` clients, each sending its next request as soon as the last one ends."""

    def __init__(self, client: httpx.AsyncClient, url: str, options: ChaosOptions):
        self.client = client
        self.url = url
        self.streams = options.streams
        self.hung_after = options.hung_after
        self.form = dict(REAL_FORM if options.real else FAKE_FORM)
        if options.real:
            self.form["chunk_size"] = REAL_FORM_CHUNK_SIZE
        self.phase = "warmup"
        self.requests: list[Request] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, phase: str) -> None:
        self.phase = phase
        self._stop.clear()
        # Spread over a second, so the streams do not all start (and end) together.
        self._tasks = [
            asyncio.create_task(self._client(i / self.streams)) for i in range(self.streams)
        ]

    async def stop(self) -> None:
        """Start no new requests; wait for the running ones (a hung one ends by itself)."""
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _client(self, delay: float) -> None:
        await asyncio.sleep(delay)
        while not self._stop.is_set():
            request = await one_request(
                self.client, self.url, self.form, self.phase, self.hung_after
            )
            self.requests.append(request)
            if request.outcome is Outcome.NOT_SERVED:  # as a polite client: Retry-After
                await asyncio.sleep(request.retry_after or NOT_SERVED_PAUSE_S)


# --- the run --------------------------------------------------------------------------------


@dataclass
class Run:
    options: ChaosOptions
    requests: list[Request] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    kills_skipped: int = 0  # fewer than two workers in rotation: nowhere to fail over to
    restart_seconds: list[float] = field(default_factory=list)  # from a kill to back healthy
    kill_phase: tuple[float, float] = (0.0, 0.0)
    rolling: tuple[float, float] | None = None  # SIGHUP to "rolling restart done"
    rolling_done: bool = False
    samples: dict[str, Sample] = field(default_factory=dict)
    under_load: list[tuple[float, Sample]] = field(default_factory=list)  # (seconds in, sample)
    balancer_pids: tuple[int | None, int | None] = (None, None)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # balancer totals by moment
    problems: list[str] = field(default_factory=list)


async def balancer_totals(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await client.get(f"{url}/stats?format=json")
    totals: dict[str, Any] = response.json()["totals"]
    return totals


async def in_rotation(client: httpx.AsyncClient, url: str) -> dict[str, int]:
    """The workers the balancer routes to, and the streams each holds now."""
    try:
        workers = (await client.get(f"{url}/stats?format=json")).json()["workers"]
    except (httpx.HTTPError, ValueError, KeyError):
        return {}
    return {w["url"]: int(w.get("in_flight", 0)) for w in workers if w.get("in_rotation")}


async def idle_sample(client: httpx.AsyncClient, url: str, pid: int) -> Sample:
    await asyncio.sleep(SETTLE_S)
    for _ in range(FLUSH_REQUESTS):
        with contextlib.suppress(httpx.HTTPError):
            await client.get(f"{url}/voices")
    return sample(pid)


async def sample_while(pid: int, run: Run, stop: asyncio.Event) -> None:
    start = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(OSError):
            run.under_load.append((time.monotonic() - start, sample(pid)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


async def kill_phase(
    deployment: Deployment, client: httpx.AsyncClient, run: Run, rng: random.Random
) -> None:
    options = run.options
    start = time.monotonic()
    end = start + options.minutes * 60
    next_kill = start + options.kill_every * rng.uniform(*KILL_GAP_JITTER)
    while next_kill < end and deployment.running:
        await asyncio.sleep(max(0.0, next_kill - time.monotonic()))
        next_kill += options.kill_every * rng.uniform(*KILL_GAP_JITTER)
        rotation = {
            u: n
            for u, n in (await in_rotation(client, deployment.balancer)).items()
            if u in deployment.pids
        }
        if len(rotation) < 2:
            run.kills_skipped += 1
            say(f"kill skipped: {len(rotation)} worker(s) in rotation")
            continue
        # One serving streams (with few streams, an idle one is often picked otherwise).
        serving = sorted(u for u, n in rotation.items() if n > 0) or sorted(rotation)
        kill = deployment.kill(rng.choice(serving))
        run.kills.append(kill)
        say(f"SIGKILL {kill.name} (pid {kill.pid}, {kill.url}), kill {len(run.kills)}")
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    run.kill_phase = (start, time.monotonic())


async def rolling_phase(deployment: Deployment, client: httpx.AsyncClient, run: Run) -> None:
    timeout = REAL_RESTART_TIMEOUT_S if run.options.real else FAKE_RESTART_TIMEOUT_S
    deadline = time.monotonic() + timeout
    # Back for the supervisor too: a worker it still sees starting at the SIGHUP, it does not
    # replace (it only waits for it), so the rolling restart would replace one worker fewer.
    while not (
        deployment.all_back(run.kills)
        and set(await in_rotation(client, deployment.balancer)) == set(deployment.workers)
    ):
        if time.monotonic() > deadline or not deployment.running:
            run.problems.append("not every worker was back before the rolling restart")
            return
        await asyncio.sleep(0.5)
    run.stats["rolling_start"] = await balancer_totals(client, deployment.balancer)
    seen = len(deployment.lines)
    started = time.monotonic()
    say("SIGHUP: rolling restart")
    deployment.rolling_restart()
    line = await deployment.wait_output(r"rolling restart (done|stopped)", timeout, after=seen)
    run.rolling = (started, time.monotonic())
    run.rolling_done = line is not None and "done" in line
    say(f"rolling restart: {line.strip() if line else 'no end within the timeout'}")
    run.stats["rolling_end"] = await balancer_totals(client, deployment.balancer)
    await asyncio.sleep(TAIL_S)


async def chaos(options: ChaosOptions, work: Path) -> Run:
    run = Run(options)
    rng = random.Random(options.seed)
    deployment = Deployment(options, work)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=options.streams)
    timeout = httpx.Timeout(10.0, read=None)  # a silent stream is ours to judge (hung_after)
    try:
        say(f"starting: {' '.join(deployment.argv[1:])}")
        await deployment.start(timeout=900.0 if options.real else 120.0)
        pid = deployment.balancer_pid
        assert pid is not None
        async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as client:
            load = Load(client, deployment.balancer, options)
            say(f"up; warming up with {options.streams} streams for {options.warmup:g} s")
            load.start("warmup")
            await asyncio.sleep(options.warmup)
            await load.stop()
            run.samples["start"] = await idle_sample(client, deployment.balancer, pid)
            run.stats["start"] = await balancer_totals(client, deployment.balancer)
            say(f"balancer at the start: {run.samples['start']}")
            stop_sampling = asyncio.Event()
            sampler = asyncio.create_task(sample_while(pid, run, stop_sampling))
            load.start("kills")
            say(
                f"{options.minutes:g} min of {options.streams} streams, "
                f"a worker killed every {options.kill_every:g} s"
            )
            await kill_phase(deployment, client, run, rng)
            load.phase = "rolling"
            await rolling_phase(deployment, client, run)
            await load.stop()
            stop_sampling.set()
            await sampler
            run.balancer_pids = (pid, deployment.balancer_pid)
            if deployment.balancer_pid == pid:
                run.samples["end"] = await idle_sample(client, deployment.balancer, pid)
            run.stats["end"] = await balancer_totals(client, deployment.balancer)
            say(f"balancer at the end: {run.samples.get('end')}")
            run.requests = [r for r in load.requests if r.phase != "warmup"]
            warm_failed = [
                r for r in load.requests if r.phase == "warmup" and r.outcome != "completed"
            ]
            if warm_failed:
                run.problems.append(f"{len(warm_failed)} warm-up requests failed")
    finally:
        await deployment.stop()
    # From each kill to its worker's next "is back" (the supervisor's restart delay included).
    for kill in run.kills:
        back = [at for at, name in deployment.back if name == kill.name and at > kill.at]
        if back:
            run.restart_seconds.append(min(back) - kill.at)
    run.problems += [
        line.strip() for line in deployment.output(r"GIVING UP|rolling restart stopped")
    ]
    return run


# --- the figures and the goals --------------------------------------------------------------


def on_killed_worker(request: Request, kills: Sequence[Kill]) -> bool:
    """An error event from a worker killed while the request ran, naming that worker."""
    return any(
        k.url == request.worker
        and request.started <= k.at <= request.ended
        and k.url in request.detail
        for k in kills
    )


def overlaps(request: Request, window: tuple[float, float] | None) -> bool:
    return window is not None and request.started <= window[1] and request.ended >= window[0]


def delta(run: Run, key: str, start: str, end: str) -> int | None:
    if start not in run.stats or end not in run.stats:
        return None
    return int(run.stats[end][key]) - int(run.stats[start][key])


def by_minute(samples: Sequence[tuple[float, Sample]]) -> list[float]:
    """The RSS of the first sample of each minute."""
    out: dict[int, float] = {}
    for seconds, taken in samples:
        out.setdefault(int(seconds // 60), taken.rss_mib)
    return list(out.values())


def figures(run: Run) -> dict[str, Any]:
    requests = run.requests
    by = {o: [r for r in requests if r.outcome is o] for o in Outcome}
    kinds = Counter(r.kind for r in requests)
    errors = by[Outcome.ERROR_EVENT]
    start, end = run.samples.get("start"), run.samples.get("end")
    seconds = (run.rolling[1] if run.rolling else run.kill_phase[1]) - run.kill_phase[0]
    chunks = sum(r.chunks for r in requests)
    load = run.under_load
    back = run.restart_seconds
    return {
        "requests": len(requests),
        "completed": len(by[Outcome.COMPLETED]),
        "failed_over_before_first_byte": delta(run, "failovers", "start", "rolling_start"),
        # Of those, streams moved after their headers and keep-alives, before any audio.
        "moved_after_keep_alives": sum(r.moves for r in requests),
        "failovers_during_rolling_restart": delta(run, "failovers", "rolling_start", "rolling_end"),
        "error_event_mid_stream": len(errors),
        "error_event_on_killed_worker": sum(on_killed_worker(r, run.kills) for r in errors),
        "error_event_before_first_audio": kinds["error_event_before_first_audio"],
        "not_served": len(by[Outcome.NOT_SERVED]),
        "refused_every_worker_full": kinds["refused_every_worker_full"],
        "refused_no_worker": kinds["refused_no_worker"],
        "not_served_other": kinds["not_served_other"],
        "hung": len(by[Outcome.HUNG]),
        "cut_off": len(by[Outcome.CUT_OFF]),
        "chunks_lost_or_reordered": sum(r.disorder is not None for r in requests),
        "failed_during_rolling_restart": sum(
            r.outcome is not Outcome.COMPLETED for r in requests if overlaps(r, run.rolling)
        ),
        "requests_during_rolling_restart": sum(overlaps(r, run.rolling) for r in requests),
        "balancer_lost_mid_stream": delta(run, "lost", "start", "end"),
        "chunks": chunks,
        "chunks_per_s": round(chunks / seconds, 1) if seconds > 0 else None,
        "kills": len(run.kills),
        "kills_skipped": run.kills_skipped,
        "kills_back": len(run.restart_seconds),
        "kill_to_back_median_s": round(statistics.median(back), 1) if back else None,
        "kill_to_back_max_s": round(max(back), 1) if back else None,
        "rolling_restart_done": run.rolling_done,
        "rolling_restart_s": round(run.rolling[1] - run.rolling[0], 1) if run.rolling else None,
        "balancer_rss_mib_start": start.rss_mib if start else None,
        "balancer_rss_mib_end": end.rss_mib if end else None,
        "balancer_rss_mib_peak_under_load": max((s.rss_mib for _, s in load), default=None),
        # Under load, at each minute: a leak climbs, a warming cache levels off.
        "balancer_rss_mib_by_minute": by_minute(load),
        "balancer_fds_start": start.fds if start else None,
        "balancer_fds_end": end.fds if end else None,
        "balancer_fds_peak_under_load": max((s.fds for _, s in load), default=None),
        "balancer_restarted": run.balancer_pids[0] != run.balancer_pids[1],
        "problems": run.problems,
    }


def goals(f: dict[str, Any]) -> list[tuple[str, bool, str]]:
    rss_start, rss_end = f["balancer_rss_mib_start"], f["balancer_rss_mib_end"]
    fds_start, fds_end = f["balancer_fds_start"], f["balancer_fds_end"]
    rss_allowed = (
        None if rss_start is None else max(RSS_TOLERANCE_MIB, RSS_TOLERANCE_FRACTION * rss_start)
    )
    mid = f["error_event_mid_stream"]
    return [
        ("0 hung streams", f["hung"] == 0, f"{f['hung']} hung"),
        (
            "0 lost or reordered chunks",
            f["chunks_lost_or_reordered"] == 0,
            f"{f['chunks_lost_or_reordered']} streams",
        ),
        (
            "every mid-stream loss is an error event on a stream on the killed worker",
            f["cut_off"] == 0 and f["error_event_on_killed_worker"] == mid,
            f"{mid} error events, {f['error_event_on_killed_worker']} on the killed worker; "
            f"{f['cut_off']} cut off without one",
        ),
        (
            # A worker's own 503 passed on means every worker tried was full: no elsewhere.
            "every request that had not started is served elsewhere (where there was room)",
            f["refused_no_worker"] + f["not_served_other"] + f["error_event_before_first_audio"]
            == 0,
            f"{f['failed_over_before_first_byte']} failovers; not served: "
            f"{f['refused_no_worker']} with no worker, {f['not_served_other']} otherwise, "
            f"{f['refused_every_worker_full']} with every worker left full; "
            f"{f['error_event_before_first_audio']} error events before any audio",
        ),
        (
            "0 failed requests during the rolling restart",
            f["rolling_restart_done"] and f["failed_during_rolling_restart"] == 0,
            f"{f['failed_during_rolling_restart']} of {f['requests_during_rolling_restart']}"
            + ("" if f["rolling_restart_done"] else "; the rolling restart did not finish"),
        ),
        (
            f"balancer memory flat (end <= start + max({RSS_TOLERANCE_MIB:g} MiB, "
            f"{RSS_TOLERANCE_FRACTION:.0%}))",
            rss_end is not None and rss_allowed is not None and rss_end <= rss_start + rss_allowed,
            f"{rss_start} -> {rss_end} MiB",
        ),
        (
            f"balancer descriptors flat (end <= start + {FD_TOLERANCE})",
            fds_end is not None and fds_start is not None and fds_end <= fds_start + FD_TOLERANCE,
            f"{fds_start} -> {fds_end}",
        ),
    ]


def examples(run: Run) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in run.requests:
        if r.outcome is Outcome.COMPLETED and r.disorder is None:
            continue
        what = r.disorder or r.detail
        key = r.kind + (" (disorder)" if r.disorder else "")
        out.setdefault(key, [])
        if len(out[key]) < EXAMPLES:
            pings = f", {r.pings_before_audio} pings before audio" if r.pings_before_audio else ""
            out[key].append(
                f"{r.phase}, {r.worker}, {r.ended - r.started:.1f} s, {r.chunks} chunks{pings}: "
                + what
            )
    return out


def report(f: dict[str, Any], verdicts: list[tuple[str, bool, str]], out: TextIO) -> None:
    width = max(len(k) for k in f)
    for key, value in f.items():
        print(f"{key:<{width}}  {value}", file=out)
    print(file=out)
    for name, ok, detail in verdicts:
        print(f"{'met    ' if ok else 'NOT MET'}  {name}: {detail}", file=out)


# --- the command ----------------------------------------------------------------------------


def parse_options(argv: Sequence[str]) -> tuple[ChaosOptions, str | None, Path | None]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--minutes", type=float, help=f"of kills [{DEFAULT_MINUTES:g}; --real {REAL_MINUTES:g}]"
    )
    p.add_argument(
        "--streams", type=int, help=f"concurrent [{DEFAULT_STREAMS}; --real {REAL_STREAMS}]"
    )
    p.add_argument(
        "--kill-every",
        type=float,
        help=f"seconds between kills [{DEFAULT_KILL_EVERY_S:g}; --real {REAL_KILL_EVERY_S:g}]",
    )
    p.add_argument("--workers", type=int, help=f"[{DEFAULT_WORKERS}; --real {REAL_WORKERS}]")
    p.add_argument("--real", action="store_true", help="random-weight workers (noise)")
    p.add_argument("--seed", type=int, default=1, help="which workers are killed [%(default)s]")
    p.add_argument("--warmup", type=float, default=WARMUP_S, help="seconds [%(default)s]")
    p.add_argument("--logs", type=Path, help="keep the deployment's logs here (default: dropped)")
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        help="the figures and goals as JSON: to PATH, or (no PATH) on stdout",
    )
    args = p.parse_args(argv)
    real = bool(args.real)

    def pick(value: Any, fake: Any, real_value: Any) -> Any:
        return value if value is not None else real_value if real else fake

    options = ChaosOptions(
        minutes=pick(args.minutes, DEFAULT_MINUTES, REAL_MINUTES),
        streams=pick(args.streams, DEFAULT_STREAMS, REAL_STREAMS),
        kill_every=pick(args.kill_every, DEFAULT_KILL_EVERY_S, REAL_KILL_EVERY_S),
        workers=pick(args.workers, DEFAULT_WORKERS, REAL_WORKERS),
        real=real,
        seed=args.seed,
        warmup=args.warmup,
        worker_flags=() if real else FAKE_WORKER_FLAGS,
    )
    return options, args.json, args.logs


def run_chaos(
    options: ChaosOptions, logs: Path | None = None
) -> tuple[Run, dict[str, Any], list[tuple[str, bool, str]]]:
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        run = asyncio.run(chaos(options, logs.resolve()))
    else:
        with tempfile.TemporaryDirectory(prefix="chaos-") as work:
            run = asyncio.run(chaos(options, Path(work)))
    f = figures(run)
    return run, f, goals(f)


def main(argv: Sequence[str] | None = None) -> int:
    options, json_to, logs = parse_options(sys.argv[1:] if argv is None else argv)
    run, f, verdicts = run_chaos(options, logs)
    human = sys.stderr if json_to == "-" else sys.stdout
    report(f, verdicts, human)
    failures = examples(run)
    if failures:
        print("\nexamples:", json.dumps(failures, indent=2), file=human)
    if json_to is not None:
        document = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "options": asdict(options),
            "cpus": os.cpu_count(),
            "load_average_1m": os.getloadavg()[0],
            "figures": f,
            "goals": [{"goal": n, "met": ok, "value": d} for n, ok, d in verdicts],
            "examples": failures,
        }
        text = json.dumps(document, indent=2)
        if json_to == "-":
            print(text)
        else:
            Path(json_to).write_text(text + "\n")
    return 0 if all(ok for _, ok, _ in verdicts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
