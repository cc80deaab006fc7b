"""The interface every source of workers implements."""

from __future__ import annotations

from typing import Protocol


class SourceUnavailable(Exception):
    """The source cannot say which workers there are right now (a file that cannot be read, a
    failed DNS resolution): the workers it gave last stay."""


class WorkerSource(Protocol):
    @property
    def name(self) -> str:
        """What log lines call it: `--workers`, `workers file PATH`, `DNS NAME:PORT`."""
        ...

    async def discover(self) -> frozenset[str]:
        """The workers' base URLs now (normalised like `--workers`), or `SourceUnavailable`."""
        ...
