"""Where the balancer's workers come from, while it runs.

Each source lists worker URLs; `Discovery` keeps the pool equal to the union of their lists.
One file per kind of source behind `base.py`, like the routing policies: `--workers` (static),
`--workers-file` (a file read again when it changes) and `--workers-dns` (a name resolved
again every interval).
"""

from __future__ import annotations

from balancer.config import BalancerConfig
from balancer.discovery.base import SourceUnavailable, WorkerSource
from balancer.discovery.dns import DnsSource
from balancer.discovery.static import StaticSource
from balancer.discovery.watcher import Discovery
from balancer.discovery.workers_file import WorkersFile


def sources_from(config: BalancerConfig) -> list[WorkerSource]:
    sources: list[WorkerSource] = []
    if config.workers:
        sources.append(StaticSource(config.workers))
    if config.workers_file is not None:
        sources.append(WorkersFile(config.workers_file))
    if config.workers_dns is not None:
        sources.append(DnsSource(config.workers_dns))
    return sources


__all__ = [
    "Discovery",
    "DnsSource",
    "SourceUnavailable",
    "StaticSource",
    "WorkerSource",
    "WorkersFile",
    "sources_from",
]
