"""The startup warning for a process without keys that others can reach."""

from __future__ import annotations

import pytest

from access.exposure import is_loopback, open_warning


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_warning(host: str) -> None:
    assert is_loopback(host) and open_warning(host, 6093, "worker") is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.5", "gpu-box"])
def test_anything_else_is_warned_about(host: str) -> None:
    warning = open_warning(host, 6095, "balancer")
    assert warning is not None and f"{host}:6095" in warning and "--api-keys-file" in warning
