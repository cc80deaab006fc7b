"""What each request needs: no key, a `user` key or an `admin` key, and whether it counts as
one of its key's concurrent streams. The same rules for the worker and the balancer, which
serve the same API.

- `/health` is open: load balancers and the start script probe it.
- `/metrics` and `/stats` are open, or need an admin key with `--restrict-ops`.
- Voices: listing needs a user key; creating and deleting an admin key.
- Every other request needs a user key (deny by default). Synthesis is every POST outside the
  voice library, and every WebSocket, which counts as one stream for its whole life (the
  balancer counts a socket in its worker's load the same way).
"""

from __future__ import annotations

from dataclasses import dataclass

from access.keys import Role

TOKEN_PATH = "/v1/auth/ws-token"  # mints WebSocket tokens: any valid key, from a header
OPEN_PATHS = frozenset({"/health"})
OPS_PATHS = frozenset({"/metrics", "/stats"})
VOICES_PATH = "/voices"


@dataclass(frozen=True)
class Need:
    role: Role | None  # None: open to anyone
    stream: bool = False  # counts against the key's concurrent streams


OPEN = Need(None)


def need(method: str, path: str, *, websocket: bool, restrict_ops: bool) -> Need:
    if websocket:
        return Need(Role.USER, stream=True)
    if path in OPEN_PATHS:
        return OPEN
    if path in OPS_PATHS:
        return Need(Role.ADMIN) if restrict_ops else OPEN
    if path == VOICES_PATH or path.startswith(VOICES_PATH + "/"):
        return Need(Role.USER if method in ("GET", "HEAD") else Role.ADMIN)
    return Need(Role.USER, stream=method == "POST")
