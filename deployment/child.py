"""One supervised program and its current process: starting it, stopping it, describing how
it ended."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from deployment.plan import Program
from deployment.restarts import RestartPolicy

LOG_TAIL_LINES = 20
# Children never see SIGINT nor SIGHUP (a blocked signal stays blocked across exec): Ctrl-C in
# a terminal signals the whole process group, and the workers must drain in turn rather than
# stop at once; SIGHUP means a rolling restart to the supervisor, and uvicorn leaves it at its
# default, which exits.
CHILDREN_IGNORE = frozenset({signal.SIGINT, signal.SIGHUP})


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})\n"


class Child:
    """One program and its current process."""

    def __init__(self, program: Program, policy: RestartPolicy):
        self.program = program
        self.policy = policy
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.started_at = 0.0
        self.healthy_at: float | None = None
        self.ready = asyncio.Event()  # healthy since its latest start
        self.state = "starting"  # what its latest health check said, for progress lines
        self.failure: str | None = None  # why the supervisor stopped it, if it did
        self.replacing = False  # stopped by a rolling restart: start the new one at once
        self.terminating = False  # sent SIGTERM (a second one would skip a worker's drain)
        self.given_up = False
        self.keeper: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.program.name

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def spawn(self, one_at_a_time: asyncio.Lock) -> None:
        """Start a new process, its output appended to the log (which the first start
        empties). `one_at_a_time`: held while signals are blocked, so that another spawn's
        unblocking cannot fall inside this one's window."""
        program = self.program
        self.starts += 1
        self.ready.clear()
        self.healthy_at, self.failure, self.state = None, None, "starting"
        self.terminating = False
        program.log.parent.mkdir(parents=True, exist_ok=True)
        with open(program.log, "wb" if self.starts == 1 else "ab") as log:
            if self.starts > 1:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                log.write(f"\n===== {stamp}: started again by the supervisor =====\n".encode())
                log.flush()
            async with one_at_a_time:
                signal.pthread_sigmask(signal.SIG_BLOCK, CHILDREN_IGNORE)
                try:
                    self.process = await asyncio.create_subprocess_exec(
                        *program.argv,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=log,
                        stderr=asyncio.subprocess.STDOUT,
                        env={**os.environ, **program.env},
                    )
                finally:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, CHILDREN_IGNORE)
        self.started_at = time.monotonic()

    async def terminate(self, grace: float) -> bool:
        """SIGTERM (once per process), then SIGKILL after `grace` seconds; returns once the
        process is gone, True if it had to be killed."""
        process = self.process
        if process is None or process.returncode is not None:
            return False
        if not self.terminating:
            self.terminating = True
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), grace)
            return False
        except TimeoutError:
            self.kill()
            await process.wait()
            return True

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
