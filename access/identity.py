"""Whose request this is: the name of the key that let it in, for log lines written anywhere
while it runs (tasks it starts inherit it). Never the key itself."""

from __future__ import annotations

from contextvars import ContextVar

current_key: ContextVar[str | None] = ContextVar("current_key", default=None)


def key_name() -> str | None:
    """The current request's key name (None: no keys file, or an open endpoint)."""
    return current_key.get()
