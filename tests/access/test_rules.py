"""What each request needs: the same rules on the worker and the balancer."""

from __future__ import annotations

import pytest

from access.keys import Role
from access.rules import OPEN, Need, need


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/health", OPEN),
        ("GET", "/metrics", OPEN),
        ("GET", "/stats", OPEN),
        ("POST", "/synthesize-stream", Need(Role.USER, stream=True)),
        ("POST", "/synthesize", Need(Role.USER, stream=True)),
        ("POST", "/v1/audio/speech", Need(Role.USER, stream=True)),
        ("POST", "/v1/text-to-speech/abc/stream", Need(Role.USER, stream=True)),
        ("GET", "/voices", Need(Role.USER)),
        ("POST", "/voices", Need(Role.ADMIN)),
        ("DELETE", "/voices/abc", Need(Role.ADMIN)),
        ("GET", "/anything-else", Need(Role.USER)),
    ],
)
def test_http_requests(method: str, path: str, expected: Need) -> None:
    assert need(method, path, websocket=False, restrict_ops=False) == expected


def test_restricted_ops_need_an_admin_and_health_stays_open() -> None:
    for path in ("/metrics", "/stats"):
        assert need("GET", path, websocket=False, restrict_ops=True) == Need(Role.ADMIN)
    assert need("GET", "/health", websocket=False, restrict_ops=True) == OPEN


def test_every_socket_is_a_users_stream() -> None:
    for path in ("/ws/tts", "/v1/text-to-speech/x/multi-stream-input", "/health"):
        assert need("GET", path, websocket=True, restrict_ops=False) == Need(Role.USER, True)


def test_an_admin_may_do_what_a_user_may() -> None:
    assert Role.ADMIN.allows(Role.USER) and Role.ADMIN.allows(Role.ADMIN)
    assert Role.USER.allows(Role.USER) and not Role.USER.allows(Role.ADMIN)
