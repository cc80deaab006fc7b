"""`BalancerConfig` from flags and environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from balancer.config import (
    DEFAULT_PORT,
    DEFAULT_READ_TIMEOUT_S,
    DEFAULT_WS_HANDSHAKE_TIMEOUT_S,
    DEFAULT_WS_MAX_MESSAGE_BYTES,
    parse_config,
    parse_workers,
    worker_url,
)


def test_flags_build_the_config() -> None:
    config = parse_config(
        [
            "--workers",
            "http://10.0.0.5:6093,10.0.0.6:6093/",
            "--port",
            "7000",
            "--health-interval",
            "0.5",
            "--voice-broadcast",
            "--read-timeout",
            "0",
            "--stream-idle-timeout",
            "15",
            "--static-dir",
            "",
            "--policy",
            "power-of-two",
        ],
        env={},
    )
    assert config.workers == ("http://10.0.0.5:6093", "http://10.0.0.6:6093")
    assert config.port == 7000 and config.health_interval == 0.5
    assert config.voice_broadcast is True
    assert config.read_timeout is None  # 0: no limit
    assert config.stream_idle_timeout == 15
    assert config.static_dir is None
    assert config.policy == "power-of-two"


def test_environment_fills_in_what_flags_leave_out() -> None:
    env = {
        "BALANCER_WORKERS": "127.0.0.1:6093",
        "BALANCER_PORT": "6100",
        "BALANCER_VOICE_BROADCAST": "1",
        "BALANCER_MAX_ATTEMPTS": "5",
    }
    config = parse_config([], env=env)
    assert config.workers == ("http://127.0.0.1:6093",)
    assert config.port == 6100 and config.voice_broadcast and config.max_attempts == 5
    assert parse_config(["--port", "6200"], env=env).port == 6200


def test_defaults_are_the_named_constants() -> None:
    config = parse_config(["--workers", "a:1"], env={})
    assert config.port == DEFAULT_PORT
    assert config.read_timeout == DEFAULT_READ_TIMEOUT_S
    assert config.static_dir == Path("frontend/dist")
    assert config.voice_broadcast is False
    assert config.ws_handshake_timeout == DEFAULT_WS_HANDSHAKE_TIMEOUT_S
    assert config.ws_max_message_bytes == DEFAULT_WS_MAX_MESSAGE_BYTES == 16 * 1024 * 1024


def test_websocket_settings_come_from_flags_or_the_environment() -> None:
    env = {"BALANCER_WS_HANDSHAKE_TIMEOUT": "2.5", "BALANCER_WS_MAX_MESSAGE_BYTES": "1024"}
    config = parse_config(["--workers", "a:1"], env=env)
    assert config.ws_handshake_timeout == 2.5 and config.ws_max_message_bytes == 1024
    flags = ["--workers", "a:1", "--ws-handshake-timeout", "4", "--ws-max-message-bytes", "99"]
    config = parse_config(flags, env=env)
    assert config.ws_handshake_timeout == 4 and config.ws_max_message_bytes == 99


def test_worker_urls_are_normalised() -> None:
    assert worker_url("gpu-box:6093") == "http://gpu-box:6093"
    assert worker_url(" https://tts.example.com/ ") == "https://tts.example.com"
    with pytest.raises(ValueError, match="no path"):
        worker_url("http://a:1/api")
    with pytest.raises(ValueError, match="twice"):
        parse_workers("a:1,http://a:1")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--workers", ""],
        ["--workers", "a:1", "--max-attempts", "0"],
        ["--workers", "a:1", "--health-interval", "0"],
        ["--workers", "a:1", "--ws-handshake-timeout", "0"],
        ["--workers", "a:1", "--ws-max-message-bytes", "0"],
        ["--workers", "a:1/x"],
    ],
)
def test_bad_settings_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(argv, env={})
