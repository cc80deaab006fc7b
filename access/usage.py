"""What each key did, for `/stats` and the logs: by the key's name, never the key."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class KeyUsage:
    requests: int = 0  # let in (streams included)
    streams_open: int = 0  # a gauge: streams and sockets running now
    streams: int = 0  # streams and sockets let in so far
    over_limit: int = 0  # refused with 429: the key's streams were all in use
    forbidden: int = 0  # refused with 403: the key's role may not do that
    tokens: int = 0  # WebSocket tokens minted


@dataclass
class AccessCounters:
    unauthorized: int = 0  # refused with 401: no key, an unknown key or a spent token
    keys: dict[str, KeyUsage] = field(default_factory=dict)

    def of(self, name: str) -> KeyUsage:
        usage = self.keys.get(name)
        if usage is None:
            usage = self.keys[name] = KeyUsage()
        return usage
