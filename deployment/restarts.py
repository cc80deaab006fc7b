"""When to restart a process that died, and when to give up on it.

A process that dies is started again after a delay that doubles with each fast failure in a
row (so one crash costs a second, and a crash loop neither spins the machine nor floods the
log), and is given up on after `limit` of them: a worker that cannot load its model will not
load it on the tenth try either, and saying so loudly beats restarting it forever. A failure
is fast when the run never became healthy or stayed healthy for less than `stable_after`
seconds; a run that served that long starts the count afresh.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_RESTART_DELAY_S = 1.0
# Long enough that a crash loop costs little, short enough that a worker whose GPU came back
# rejoins within half a minute.
MAX_RESTART_DELAY_S = 30.0
# Five fast failures span 1 + 2 + 4 + 8 = 15 s of delays plus five start-ups: time enough for
# a passing problem (a port still held, a GPU being reset) to clear.
DEFAULT_RESTART_LIMIT = 5
# A worker that served a minute was healthy: its next crash is not part of a loop.
STABLE_AFTER_S = 60.0


@dataclass
class RestartPolicy:
    delay: float = DEFAULT_RESTART_DELAY_S
    limit: int = DEFAULT_RESTART_LIMIT
    max_delay: float = MAX_RESTART_DELAY_S
    stable_after: float = STABLE_AFTER_S
    fast_failures: int = 0  # in a row

    def after_exit(self, healthy_for: float | None) -> float | None:
        """Seconds to wait before starting the process again, or None: give up.
        `healthy_for`: how long the run that ended was healthy (None: it never was)."""
        if healthy_for is not None and healthy_for >= self.stable_after:
            self.fast_failures = 0
        self.fast_failures += 1
        if self.fast_failures >= self.limit:
            return None
        return min(self.delay * 2.0 ** (self.fast_failures - 1), self.max_delay)

    def reset(self) -> None:
        self.fast_failures = 0
