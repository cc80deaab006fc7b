"""API keys as the service holds them: a name, a role, an optional stream limit, and the
key's SHA-256 digest, never the key itself.

A presented key is hashed and compared with every known digest, each with
`hmac.compare_digest` and without stopping at a match, so neither a key's content nor its
place in the file changes how long a lookup takes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    USER = "user"  # synthesize and list voices
    ADMIN = "admin"  # also create and delete voices (and read restricted /metrics, /stats)

    def allows(self, needed: Role) -> bool:
        return self is Role.ADMIN or needed is Role.USER


def digest(key: str) -> bytes:
    """The SHA-256 of a key's UTF-8 bytes: what the service stores and compares."""
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class ApiKey:
    name: str  # what /stats and the logs show
    role: Role
    sha256: bytes
    max_streams: int | None = None  # None: the process's default limit

    def __repr__(self) -> str:  # no digest in tracebacks or logs
        return f"ApiKey({self.name!r}, {self.role.value})"


class KeyRing:
    def __init__(self, keys: Iterable[ApiKey]):
        self._keys = tuple(keys)

    def __iter__(self) -> Iterator[ApiKey]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def find(self, presented: str) -> ApiKey | None:
        """The key whose digest matches, in time independent of which one (None: no match)."""
        wanted = digest(presented)
        found = None
        for key in self._keys:
            if hmac.compare_digest(key.sha256, wanted):
                found = key
        return found
