"""What the balancer counts: per worker and in total. `/stats` and `/metrics` both read these,
so the two views can never disagree and nothing is counted twice."""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field

# Time to first chunk: from routing a request to a worker until its first audio event.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13, 21, 34, 60)
LATENCY_WINDOW = 1000  # recent samples behind the p50/p95 in /stats


class LatencyRecorder:
    """Recent samples for percentiles, plus cumulative Prometheus histogram buckets."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS, window: int = LATENCY_WINDOW):
        self.buckets = buckets
        self.bucket_counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.count = 0
        self.sum = 0.0
        self._recent: deque[float] = deque(maxlen=window)

    def observe(self, seconds: float) -> None:
        self._recent.append(seconds)
        self.bucket_counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.count += 1
        self.sum += seconds

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile of the recent window (None before any sample)."""
        if not self._recent:
            return None
        ordered = sorted(self._recent)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[rank - 1]

    def cumulative(self) -> list[tuple[str, int]]:
        out, total = [], 0
        for bound, n in zip((*map(str, self.buckets), "+Inf"), self.bucket_counts, strict=True):
            total += n
            out.append((bound, total))
        return out


@dataclass
class SocketCounters:
    """WebSocket sessions, per worker and in total. An open socket also holds its worker's lease,
    so it is in `in_flight` (the load the policy reads) as well as in `open` here.

    In total, every client handshake handled ends in `opened` or `refused`, and every opened
    socket in exactly one of `worker_closed`, `client_closed` and `lost`.
    """

    open: int = 0  # open now (a gauge)
    opened: int = 0  # worker handshakes completed: the client's socket is relayed there
    refused: int = 0  # total: client handshakes refused; per worker: upgrades it refused
    failovers: int = 0  # moved from a worker to another before its handshake completed
    lost: int = 0  # worker lost mid-socket: the client got an error message and close 1011
    client_closed: int = 0  # the client went first: the worker's socket was closed at once
    # The worker's socket closed: its close code was passed on (or ours, 1009, when the worker
    # sent a message over the size limit).
    worker_closed: int = 0
    # Contexts of multi-stream sockets (balancer/contexts.py): open now, and opened so far.
    contexts_open: int = 0
    contexts_opened: int = 0


@dataclass
class WorkerCounters:
    requests: int = 0  # attempts routed here, failed ones included
    completed: int = 0  # responses relayed to the end
    errors: int = 0  # the worker failed: refused, cut off, timed out, or a 5xx other than 503
    rejected: int = 0  # 503 busy/loading before any byte: tried elsewhere or passed through
    failovers: int = 0  # requests moved from this worker to another before their first byte
    lost: int = 0  # streams cut off after their first byte (the client got an error event)
    client_disconnects: int = 0
    ttfc: LatencyRecorder = field(default_factory=LatencyRecorder)
    sockets: SocketCounters = field(default_factory=SocketCounters)


@dataclass
class TotalCounters:
    requests: int = 0  # client requests proxied (own endpoints and static files excluded)
    completed: int = 0
    failovers: int = 0
    lost: int = 0
    client_disconnects: int = 0
    no_worker: int = 0  # answered 503 by the balancer itself: no worker could take it
    rejected: int = 0  # answered with a worker's own 503: every worker tried was busy
    too_large: int = 0
    # Every request ends in exactly one of: completed, lost, client_disconnects, no_worker,
    # rejected, too_large (counted after the last byte is sent, so a client leaving during it
    # counts as a disconnect only). WebSockets are counted apart, in `sockets`.
    sockets: SocketCounters = field(default_factory=SocketCounters)
