"""What a deployment on this machine runs: the flags of `start_streaming_servers.sh`, and the
programs they make (one worker per GPU, or one CPU worker, and the balancer in front).

Worker N listens on worker-port + N and sees one GPU: with CUDA_VISIBLE_DEVICES=N, or, when the
user has set CUDA_VISIBLE_DEVICES to a list, the list's N-th device. It logs to
`logs/gpuN_streaming_server.log` (`cpuN_...` on a CPU); the balancer logs to
`logs/loadbalancer_streaming.log`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from deployment.restarts import DEFAULT_RESTART_DELAY_S, DEFAULT_RESTART_LIMIT

DEFAULT_WORKER_PORT = 6093
# The balancer reads an admin key for the supervisor from this variable (balancer/config.py):
# with `--restrict-ops` its /stats, which tell the supervisor a worker is back in rotation,
# need one.
SUPERVISOR_KEY_ENV = "BALANCER_SUPERVISOR_KEY"
DEFAULT_WORKER_HOST = "127.0.0.1"  # the balancer is the way in; workers stay on loopback
DEFAULT_PORT = 6095
DEFAULT_HOST = "0.0.0.0"
DEFAULT_MODEL = "turbo"
DEFAULT_VOICES_DIR = Path("voices")
DEFAULT_LOG_DIR = Path("logs")
# The first run on a new machine may download the weights.
DEFAULT_READY_TIMEOUT_S = 900.0
# The worker's own default (server/config.py), repeated: the supervisor waits that long (and a
# little more) for a draining worker before it kills it.
DEFAULT_DRAIN_TIMEOUT_S = 30.0
DEFAULT_WORKER_MODULE = "server"

GPU_HELP = (
    "Worker N sees GPU N alone (more workers than GPUs share them in turn). When "
    "CUDA_VISIBLE_DEVICES is set, worker N sees its N-th listed device instead (by default one "
    "worker per listed device; set but empty: no GPU, one CPU worker)."
)
SIGHUP_HELP = (
    "Ctrl-C or SIGTERM stops everything (the workers drain first: their running streams "
    "finish, for at most --drain-timeout). A worker or the balancer that dies is restarted "
    "(after 1 s, doubling up to 30 s; given up on after --restart-limit fast failures in a "
    "row). SIGHUP (kill -HUP <pid>) restarts the workers one at a time, each drained first "
    "and the next only once the new one is healthy: no request fails while another worker "
    "is up. BALANCER_* environment variables configure the balancer further (see `python -m "
    "balancer --help`)."
)


class Role(Enum):
    WORKER = "worker"
    BALANCER = "balancer"


@dataclass(frozen=True)
class Program:
    """One process to keep running."""

    name: str  # "gpu0 worker", "balancer"
    role: Role
    argv: tuple[str, ...]
    log: Path
    url: str  # where it answers HTTP, from this machine
    # On top of ours; repr=False: it may hold the supervisor's key.
    env: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Options:
    workers: int | None = None  # None: one per GPU, or one on the CPU
    model: str = DEFAULT_MODEL
    ckpt_dir: Path | None = None
    random_weights: bool = False
    worker_port: int = DEFAULT_WORKER_PORT
    worker_host: str = DEFAULT_WORKER_HOST
    port: int = DEFAULT_PORT
    host: str = DEFAULT_HOST
    max_streams: int | None = None
    max_batch: int | None = None
    voices_dir: Path = DEFAULT_VOICES_DIR
    log_dir: Path = DEFAULT_LOG_DIR
    ready_timeout: float = DEFAULT_READY_TIMEOUT_S
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT_S
    restart_limit: int = DEFAULT_RESTART_LIMIT
    restart_delay: float = DEFAULT_RESTART_DELAY_S
    python: str = sys.executable
    worker_module: str = DEFAULT_WORKER_MODULE
    extra: tuple[str, ...] = ()  # worker flags after `--`


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="start_streaming_servers.sh",
        usage="%(prog)s [options] [-- extra worker flags]",
        description="Start a streaming deployment on this machine: one worker per GPU (or one "
        "CPU worker when there is none) and the load balancer in front of them, wait until all "
        "are healthy, and keep them running.",
        epilog=f"{GPU_HELP} {SIGHUP_HELP}",
    )
    weights = p.add_mutually_exclusive_group()
    weights.add_argument(
        "--random-weights", action="store_true", help="serve random weights (noise; smoke tests)"
    )
    weights.add_argument("--ckpt-dir", type=Path, help="checkpoint directory (default: the hub)")
    p.add_argument("--model", choices=("turbo", "original"), default=DEFAULT_MODEL)
    p.add_argument("--workers", type=_positive, help="default: one per GPU, or one on the CPU")
    p.add_argument("--worker-port", type=int, default=DEFAULT_WORKER_PORT, help="worker N: +N")
    p.add_argument("--worker-host", default=DEFAULT_WORKER_HOST)
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="the balancer's port")
    p.add_argument("--host", default=DEFAULT_HOST, help="the balancer's interface")
    p.add_argument("--max-batch", type=_positive, help="worker flag (see python -m server -h)")
    p.add_argument("--max-streams", type=_positive, help="worker flag")
    p.add_argument("--voices-dir", type=Path, default=DEFAULT_VOICES_DIR)
    p.add_argument("--log-dir", type=Path, default=DEFAULT_LOG_DIR)
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=DEFAULT_READY_TIMEOUT_S,
        help="seconds every process gets to become healthy [%(default)s]",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=DEFAULT_DRAIN_TIMEOUT_S,
        help="seconds a stopping worker's running streams get to finish [%(default)s]",
    )
    p.add_argument(
        "--restart-limit",
        type=_positive,
        default=DEFAULT_RESTART_LIMIT,
        help="fast failures in a row before a process is given up on [%(default)s]",
    )
    p.add_argument(
        "--restart-delay",
        type=float,
        default=DEFAULT_RESTART_DELAY_S,
        help="seconds before the first restart; doubles on each fast failure [%(default)s]",
    )
    p.add_argument("--python", default=sys.executable, help="the interpreter for the processes")
    p.add_argument(
        "--worker-module",
        default=DEFAULT_WORKER_MODULE,
        help="`python -m MODULE` serves each worker (tests run tests.fake_worker) [%(default)s]",
    )
    return p


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def parse_options(argv: Sequence[str]) -> Options:
    argv = list(argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    return Options(
        workers=args.workers,
        model=args.model,
        ckpt_dir=args.ckpt_dir,
        random_weights=args.random_weights,
        worker_port=args.worker_port,
        worker_host=args.worker_host,
        port=args.port,
        host=args.host,
        max_streams=args.max_streams,
        max_batch=args.max_batch,
        voices_dir=args.voices_dir,
        log_dir=args.log_dir,
        ready_timeout=args.ready_timeout,
        drain_timeout=args.drain_timeout,
        restart_limit=args.restart_limit,
        restart_delay=args.restart_delay,
        python=args.python,
        worker_module=args.worker_module,
        extra=tuple(extra),
    )


class PlanError(ValueError):
    """The flags and the environment ask for a deployment this machine cannot run."""


def visible_devices(env: Mapping[str, str]) -> tuple[str, ...] | None:
    """The devices the user's CUDA_VISIBLE_DEVICES lists (indices, UUIDs or MIG names, kept as
    written); None when it is unset. Set but empty lists none: CUDA then sees no GPU."""
    text = env.get("CUDA_VISIBLE_DEVICES")
    if text is None:
        return None
    return tuple(device.strip() for device in text.split(",") if device.strip())


def worker_devices(
    workers: int | None, gpus: int, visible: Sequence[str] | None
) -> list[str | None]:
    """Each worker's CUDA_VISIBLE_DEVICES, or None for a CPU worker."""
    if visible is not None and gpus > 0:
        if not visible:  # the user hid every GPU
            return [None] * (workers or 1)
        count = workers or len(visible)
        if count > len(visible):
            raise PlanError(
                f"--workers {count} asks for a GPU per worker, but CUDA_VISIBLE_DEVICES lists "
                f"{len(visible)} ({','.join(visible)}): list more devices there, or ask for at "
                f"most {len(visible)} workers"
            )
        return list(visible[:count])
    if gpus == 0:
        return [None] * (workers or 1)
    return [str(i % gpus) for i in range(workers or gpus)]


def detect_gpus() -> int:
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        found = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in found.stdout.splitlines() if line.strip().isdigit())


def local_url(host: str, port: int) -> str:
    """Where this machine reaches a server listening on `host`."""
    if host in ("0.0.0.0", "::", ""):
        host = "localhost"
    return f"http://{host}:{port}"


def plan(
    options: Options,
    gpus: int,
    visible: Sequence[str] | None = None,
    supervisor_key: str | None = None,
) -> list[Program]:
    """The workers, then the balancer; `gpus` as nvidia-smi counts them, `visible` as
    `visible_devices` reads the user's CUDA_VISIBLE_DEVICES; `supervisor_key`, an admin key
    the balancer accepts from the supervisor alone (in its environment). PlanError when they
    cannot be met."""
    workers = []
    for i, visible_device in enumerate(worker_devices(options.workers, gpus, visible)):
        port = options.worker_port + i
        argv = [options.python, "-m", options.worker_module]
        argv += ["--host", options.worker_host, "--port", str(port), "--model", options.model]
        argv += ["--voices-dir", str(options.voices_dir)]
        argv += ["--drain-timeout", _seconds(options.drain_timeout)]
        if options.ckpt_dir is not None:
            argv += ["--ckpt-dir", str(options.ckpt_dir)]
        if options.random_weights:
            argv += ["--random-weights"]
        if options.max_streams is not None:
            argv += ["--max-streams", str(options.max_streams)]
        if options.max_batch is not None:
            argv += ["--max-batch", str(options.max_batch)]
        # The device is always cuda:0: CUDA_VISIBLE_DEVICES leaves the worker one GPU, and a
        # CPU worker sees none.
        if visible_device is not None:
            name, device, seen = f"gpu{i}", "cuda:0", visible_device
        else:
            name, device, seen = f"cpu{i}", "cpu", ""
        argv += ["--device", device, *options.extra]
        workers.append(
            Program(
                name=f"{name} worker",
                role=Role.WORKER,
                argv=tuple(argv),
                log=options.log_dir / f"{name}_streaming_server.log",
                url=f"http://{options.worker_host}:{port}",
                env={"CUDA_VISIBLE_DEVICES": seen},
            )
        )
    urls = ",".join(w.url for w in workers)
    balancer = Program(
        name="balancer",
        role=Role.BALANCER,
        argv=(
            options.python,
            *("-m", "balancer", "--workers", urls, "--host", options.host),
            *("--port", str(options.port)),
        ),
        log=options.log_dir / "loadbalancer_streaming.log",
        url=local_url(options.host, options.port),
        env={SUPERVISOR_KEY_ENV: supervisor_key} if supervisor_key else {},
    )
    return [*workers, balancer]


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)
