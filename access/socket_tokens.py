"""Single-use tokens that let a browser open a WebSocket with its key.

Browsers cannot set headers on a WebSocket, and a key in the URL would be long-lived and end
up in access logs and browser history. So the page asks `POST /v1/auth/ws-token` (its key in
the Authorization header) for a token, and opens the socket with `?single_use_token=<token>`
at once: the token acts for its key (its role, its stream limit), works once, and expires
after `SOCKET_TOKEN_TTL_S`, so a URL that is logged holds nothing usable. (The other browser
trick, the key as a `Sec-WebSocket-Protocol` value, puts the long-lived key itself in a header
that proxies log and that the server must echo back.)

Tokens are held by their SHA-256, so looking one up compares digests of what the client sent,
never the secret itself. They live in the process that minted them: behind a balancer, the
balancer mints and redeems them.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable

from access.keys import ApiKey

# Long enough for a page to open the socket it asked a token for, short enough that a token
# that leaked unused is soon worthless.
SOCKET_TOKEN_TTL_S = 60.0
# Outstanding tokens at most: a client minting without ever connecting cannot grow the table.
MAX_OUTSTANDING_TOKENS = 10_000
TOKEN_BYTES = 32


class TooManyTokens(Exception):
    pass


class SocketTokens:
    def __init__(
        self,
        ttl: float = SOCKET_TOKEN_TTL_S,
        limit: int = MAX_OUTSTANDING_TOKENS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.ttl = ttl
        self.limit = limit
        self.clock = clock
        self._tokens: dict[bytes, tuple[ApiKey, float]] = {}  # digest -> key, expiry

    def __len__(self) -> int:
        return len(self._tokens)

    def mint(self, key: ApiKey) -> str:
        now = self.clock()
        self._forget_expired(now)
        if len(self._tokens) >= self.limit:
            raise TooManyTokens()
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self._tokens[_digest(token)] = (key, now + self.ttl)
        return token

    def redeem(self, token: str) -> ApiKey | None:
        """The key a token stands for, once (None: unknown, used or expired)."""
        found = self._tokens.pop(_digest(token), None)
        if found is None:
            return None
        key, expires = found
        return key if self.clock() < expires else None

    def _forget_expired(self, now: float) -> None:
        expired = [d for d, (_, expires) in self._tokens.items() if expires <= now]
        for d in expired:
            del self._tokens[d]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
