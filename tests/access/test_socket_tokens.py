"""Single-use WebSocket tokens: once each, for a minute, in bounded number."""

from __future__ import annotations

import pytest

from access.keys import ApiKey, Role, digest
from access.socket_tokens import SocketTokens, TooManyTokens

KEY = ApiKey("web", Role.USER, digest("k"))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_token_works_once() -> None:
    tokens = SocketTokens()
    token = tokens.mint(KEY)
    assert len(token) >= 40 and tokens.mint(KEY) != token
    assert tokens.redeem(token) is KEY
    assert tokens.redeem(token) is None
    assert tokens.redeem("made-up") is None


def test_a_token_expires_and_expired_ones_are_forgotten() -> None:
    clock = Clock()
    tokens = SocketTokens(ttl=60, clock=clock)
    old = tokens.mint(KEY)
    clock.now += 60
    assert tokens.redeem(old) is None
    stale = tokens.mint(KEY)
    clock.now += 61
    tokens.mint(KEY)
    assert len(tokens) == 1  # `stale` was dropped when the next one was minted
    assert tokens.redeem(stale) is None


def test_outstanding_tokens_are_bounded() -> None:
    tokens = SocketTokens(limit=2)
    tokens.mint(KEY)
    tokens.mint(KEY)
    with pytest.raises(TooManyTokens):
        tokens.mint(KEY)
