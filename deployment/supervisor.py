"""Keeps a deployment's processes running.

Starts every program and waits until all are healthy (a process that dies before that is a
configuration problem, reported at once with the end of its log). From then on a process that
dies is restarted under `RestartPolicy` while the others keep serving, and the log says what
died, how, and when it came back. SIGHUP replaces the workers one at a time: drain (SIGTERM),
wait for the exit (a new worker needs the port and the GPU), start the new one, wait until the
balancer routes to it, then the next. SIGINT or SIGTERM stops everything: the workers first,
drained, then the balancer; a second one kills what is left at once.

A worker is healthy when its /health says `ready` and the balancer has it in rotation (so a
rolling restart never takes a worker down while the balancer still waits to route to the new
one); the balancer, when its /health answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

import httpx

from deployment.child import Child, describe_exit, log_tail
from deployment.plan import SUPERVISOR_KEY_ENV, Program, Role
from deployment.probes import READY, HealthProbe
from deployment.restarts import RestartPolicy

# Beyond a worker's drain (or the balancer's own shutdown), how long a process gets after
# SIGTERM before SIGKILL.
STOP_GRACE_S = 10.0
POLL_S = 0.25  # health checks while a process comes up
PROBE_TIMEOUT_S = 2.0


class Supervisor:
    def __init__(
        self,
        programs: Sequence[Program],
        *,
        ready_timeout: float,
        drain_timeout: float,
        policy: Callable[[], RestartPolicy] = RestartPolicy,
        on_up: Callable[[], None] = lambda: None,
    ):
        self.children = [Child(p, policy()) for p in programs]
        self.workers = [c for c in self.children if c.program.role is Role.WORKER]
        self.balancer = next(c for c in self.children if c.program.role is Role.BALANCER)
        self.ready_timeout = ready_timeout
        self.drain_timeout = drain_timeout
        self.on_up = on_up
        self.up = False  # every process was healthy once
        self.exit_code = 0
        self._stopping = asyncio.Event()
        self._rolling: asyncio.Task[None] | None = None
        self._probe: HealthProbe | None = None
        self._spawning = asyncio.Lock()

    # --- the whole deployment --------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self.stop, 130, "interrupted")
        loop.add_signal_handler(signal.SIGTERM, self.stop, 143, "SIGTERM")
        loop.add_signal_handler(signal.SIGHUP, self.rolling_restart)
        try:
            async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S) as client:
                balancer = self.balancer.program
                key = balancer.env.get(SUPERVISOR_KEY_ENV)
                self._probe = HealthProbe(client, balancer.url, key)
                for child in self.children:
                    self._keep(child)
                if await self._wait_up():
                    self.up = True
                    self.on_up()
                    await self._stopping.wait()
                await self._stop_all()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        return self.exit_code

    def stop(self, code: int, why: str) -> None:
        if self._stopping.is_set():
            self.log(f"{why} again: killing every process now")
            for child in self.children:
                child.kill()
            return
        self.exit_code = code
        self.log(f"{why}: stopping the deployment (workers drain first; again to kill at once)")
        self._stopping.set()

    def fail(self, message: str) -> None:
        """Something the deployment cannot carry on without: say so and stop everything."""
        if self._stopping.is_set():
            return
        self.error(message)
        self.exit_code = 1
        self._stopping.set()

    async def _wait_up(self) -> bool:
        while any(c.process is None for c in self.children) and not self._stopping.is_set():
            await self._pause(POLL_S / 10)  # every process started first
        deadline = time.monotonic() + self.ready_timeout
        self.say(f"waiting for every process to become healthy (up to {self.ready_timeout:g} s)...")
        last = ""
        while not self._stopping.is_set():
            if all(c.ready.is_set() for c in self.children):
                return True
            ready = sum(c.ready.is_set() for c in self.workers)
            states = ", ".join(f"{c.name} {c.state}" for c in self.children)
            progress = f"waiting: {ready}/{len(self.workers)} workers ready ({states})"
            if time.monotonic() > deadline:
                logs = self.balancer.program.log.parent
                self.fail(f"not ready after {self.ready_timeout:g} s ({progress}); see {logs}/")
                return False
            if progress != last:
                self.say("  " + progress)
                last = progress
            await self._pause(POLL_S)
        return False

    async def _stop_all(self) -> None:
        if self._rolling is not None:
            self._rolling.cancel()
        alive = [c for c in self.children if c.alive]
        self.say(f"stopping {len(alive)} process(es)...")
        # Workers first: while they drain, the balancer still relays their running streams
        # (and answers new requests with 503, no worker being ready).
        grace = self.drain_timeout + STOP_GRACE_S
        await asyncio.gather(*(self._terminate(c, grace) for c in self.workers))
        await self._terminate(self.balancer, STOP_GRACE_S)
        for child in self.children:
            if child.keeper is not None:
                child.keeper.cancel()
        self.say("stopped.")

    # --- one process -----------------------------------------------------------------------

    def _keep(self, child: Child) -> None:
        child.keeper = asyncio.create_task(self._keep_running(child), name=child.name)

    async def _keep_running(self, child: Child) -> None:
        """Start `child`, and start it again each time it dies, until the policy gives up."""
        while True:
            try:
                await self._spawn(child)
            except OSError as exc:
                self.fail(f"could not start the {child.name}: {exc}")
                return
            assert child.process is not None
            exited = asyncio.create_task(child.process.wait())
            await self._watch_health(child, exited)
            code = await exited
            if self._stopping.is_set():
                return
            how = describe_exit(code)
            if child.replacing:
                child.replacing = False
                self.log(f"the {child.name} {how} for the rolling restart; starting its successor")
                continue
            why = child.failure or how
            if not self.up:
                log = child.program.log
                self.fail(
                    f"the {child.name} {why} during startup; the end of {log}:\n{log_tail(log)}"
                )
                return
            now = time.monotonic()
            healthy_for = None if child.healthy_at is None else now - child.healthy_at
            delay = child.policy.after_exit(healthy_for)
            up = f"{now - child.started_at:.1f} s after its start"
            if delay is None:
                self._give_up(child, f"{why} {up}")
                return
            self.log(
                f"the {child.name} (pid {child.pid}) {why} {up}; restarting it in {delay:g} s "
                f"(fast failure {child.policy.fast_failures} of {child.policy.limit})"
            )
            await self._pause(delay)
            if self._stopping.is_set():
                return

    def _give_up(self, child: Child, why: str) -> None:
        child.given_up = True
        log = child.program.log
        self.error(
            f"GIVING UP on the {child.name}: it {why}, its {child.policy.fast_failures}th fast "
            f"failure in a row. It stays down (SIGHUP starts it again). The end of {log}:\n"
            + log_tail(log)
        )
        if child is self.balancer:
            self.fail("the balancer is down for good: stopping the deployment")
        elif all(w.given_up for w in self.workers):
            self.fail("every worker is down for good: stopping the deployment")

    async def _spawn(self, child: Child) -> None:
        await child.spawn(self._spawning)
        what = "started" if child.starts == 1 else "restarted"
        where = f"{child.program.url} (pid {child.pid}, log {child.program.log})"
        self.log(f"{what} the {child.name} on {where}")

    async def _watch_health(self, child: Child, exited: asyncio.Task[int]) -> None:
        """Poll until `child` is healthy (then log it if it came back), its process exits, or
        it reports a failed model or overruns the ready timeout (then stop it, saying why)."""
        deadline = child.started_at + self.ready_timeout
        while not exited.done() and not self._stopping.is_set():
            assert self._probe is not None
            state = await self._probe.state(child.program)
            child.state = state
            if state == READY:
                child.healthy_at = time.monotonic()
                child.ready.set()
                if child.starts > 1:
                    seconds = child.healthy_at - child.started_at
                    self.log(
                        f"the {child.name} is back (pid {child.pid}), healthy after {seconds:.1f} s"
                    )
                return
            if state.startswith("failed"):
                child.failure = f"reported {state}"
            elif time.monotonic() > deadline:
                child.failure = f"was not healthy after {self.ready_timeout:g} s ({state})"
            if child.failure is not None:
                self.error(f"the {child.name} {child.failure}: stopping it")
                await self._terminate(child, STOP_GRACE_S)
                return
            await asyncio.wait({exited}, timeout=POLL_S)

    async def _terminate(self, child: Child, grace: float) -> None:
        if await child.terminate(grace):
            self.error(f"the {child.name} still ran {grace:g} s after SIGTERM: it was killed")

    # --- rolling restart -------------------------------------------------------------------

    def rolling_restart(self) -> None:
        if self._stopping.is_set() or not self.up:
            self.log("SIGHUP ignored: the deployment is not up (yet, or any more)")
        elif self._rolling is not None and not self._rolling.done():
            self.log("SIGHUP ignored: a rolling restart is already running")
        else:
            self._rolling = asyncio.create_task(self._roll(), name="rolling restart")

    async def _roll(self) -> None:
        count = len(self.workers)
        self.log(f"SIGHUP: replacing the {count} worker(s) one at a time")
        if count == 1:
            self.log("only one worker: requests get 503 while it is replaced")
        for i, child in enumerate(self.workers, 1):
            if child.given_up:
                self.log(f"starting the {child.name} again ({i}/{count}): it had been given up on")
                child.given_up = False
                child.policy.reset()
                self._keep(child)
            elif child.ready.is_set():
                self.log(
                    f"replacing the {child.name} ({i}/{count}): draining it "
                    f"(at most {self.drain_timeout:g} s)"
                )
                child.replacing = True
                child.ready.clear()
                await self._terminate(child, self.drain_timeout + STOP_GRACE_S)
            else:
                self.log(f"the {child.name} ({i}/{count}) is starting already: waiting for it")
            if not await self._wait_ready(child):
                self.error(
                    f"rolling restart stopped: the {child.name} did not become healthy; the "
                    "workers after it were left as they are"
                )
                return
        self.log("rolling restart done: every worker was replaced")

    async def _wait_ready(self, child: Child) -> bool:
        deadline = time.monotonic() + self.ready_timeout
        while not child.ready.is_set():
            if child.given_up or self._stopping.is_set() or time.monotonic() > deadline:
                return False
            await self._pause(POLL_S)
        return True

    # --- small things ----------------------------------------------------------------------

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up when the deployment stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def say(self, message: str) -> None:
        _print(message, sys.stdout)

    def log(self, message: str) -> None:
        _print(f"{time.strftime('%H:%M:%S')} {message}", sys.stdout)

    def error(self, message: str) -> None:
        _print(f"{time.strftime('%H:%M:%S')} {message}", sys.stderr)


def _print(message: str, stream: TextIO) -> None:
    # A closed terminal must not take the supervisor (and so the deployment) down with it.
    with contextlib.suppress(OSError, ValueError):
        print(message, file=stream, flush=True)
