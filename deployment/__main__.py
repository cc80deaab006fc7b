"""`python -m deployment` (what `start_streaming_servers.sh` runs): the workers and the balancer
of this machine, started, health-checked and kept running. `--help` lists the flags."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Sequence

from deployment.plan import (
    Options,
    PlanError,
    Program,
    Role,
    detect_gpus,
    parse_options,
    plan,
    visible_devices,
)
from deployment.restarts import RestartPolicy
from deployment.supervisor import Supervisor

NOISE_BANNER = """\
################################################################################
#  RANDOM WEIGHTS: every voice is NOISE. This deployment is for smoke tests only. #
################################################################################"""

# Built here, once, before the workers start: N workers would otherwise all build it at once.
RANDOM_CHECKPOINT = """
import sys
from server.engine.__main__ import random_checkpoint
from server.engine.loading import ModelVariant
print(random_checkpoint(ModelVariant(sys.argv[1])))
"""


def prepare_random_checkpoint(options: Options) -> bool:
    log = options.log_dir / "random_checkpoint.log"
    print(f"preparing the random {options.model} checkpoint (log: {log})...", flush=True)
    with open(log, "ab") as errors:
        done = subprocess.run(
            [options.python, "-c", RANDOM_CHECKPOINT, options.model],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        print(f"building the random checkpoint failed; see {log}", file=sys.stderr)
        return False
    print(f"random {options.model} checkpoint: {done.stdout.strip()}", flush=True)
    return True


def banner(programs: Sequence[Program], options: Options) -> str:
    balancer = next(p for p in programs if p.role is Role.BALANCER)
    workers = [p for p in programs if p.role is Role.WORKER]
    url = balancer.url
    lines = [
        "",
        "Chatterbox streaming is up:",
        f"  balancer   {url}   (dashboard {url}/stats, metrics {url}/metrics)",
        f"             log {balancer.log}",
    ]
    lines += [f"  worker {i}   {w.url}   {w.name}, log {w.log}" for i, w in enumerate(workers)]
    lines.append(f"  stream:    curl -N -X POST {url}/synthesize-stream -F 'text=Hello there.'")
    if options.random_weights:
        lines.append(NOISE_BANNER)
    lines.append(
        "Ctrl-C stops everything; kill -HUP <this pid> restarts the workers one at a time."
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(sys.argv[1:] if argv is None else argv)
    try:  # before anything is built or started
        key = secrets.token_urlsafe(32)  # new each start: it lives only in our children
        programs = plan(options, detect_gpus(), visible_devices(os.environ), key)
    except PlanError as exc:
        print(f"start_streaming_servers.sh: error: {exc}", file=sys.stderr)
        return 2
    options.log_dir.mkdir(parents=True, exist_ok=True)
    options.voices_dir.mkdir(parents=True, exist_ok=True)
    if options.random_weights:
        print(NOISE_BANNER, flush=True)
        if not prepare_random_checkpoint(options):
            return 1
    text = banner(programs, options)
    supervisor = Supervisor(
        programs,
        ready_timeout=options.ready_timeout,
        drain_timeout=options.drain_timeout,
        policy=lambda: RestartPolicy(delay=options.restart_delay, limit=options.restart_limit),
        on_up=lambda: print(text, flush=True),
    )
    return asyncio.run(supervisor.run())


if __name__ == "__main__":
    raise SystemExit(main())
