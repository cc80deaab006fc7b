"""The interface every policy implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar


class Loaded(Protocol):
    @property
    def load(self) -> float:
        """In-flight requests relative to capacity (0 idle, 1 full)."""
        ...


W = TypeVar("W", bound=Loaded)


class Policy(Protocol):
    @property
    def name(self) -> str: ...

    def select(self, candidates: Sequence[W]) -> W:
        """One of `candidates` (never empty)."""
        ...
