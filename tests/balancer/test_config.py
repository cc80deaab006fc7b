"""`BalancerConfig` from flags and environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from balancer.config import (
    DEFAULT_API_KEYS_FILE,
    DEFAULT_DISCOVERY_INTERVAL_S,
    DEFAULT_KEY_MAX_STREAMS,
    DEFAULT_PORT,
    DEFAULT_READ_TIMEOUT_S,
    DEFAULT_RESTRICT_OPS,
    DEFAULT_WS_HANDSHAKE_TIMEOUT_S,
    DEFAULT_WS_MAX_MESSAGE_BYTES,
    DnsName,
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


def test_keys_come_from_flags_or_the_environment() -> None:
    config = parse_config(["--workers", "a:1"], env={})
    assert (config.api_keys_file, config.key_max_streams, config.restrict_ops) == (
        DEFAULT_API_KEYS_FILE,
        DEFAULT_KEY_MAX_STREAMS,
        DEFAULT_RESTRICT_OPS,
    )
    assert (config.api_keys_file, config.key_max_streams, config.restrict_ops) == (None, 0, False)
    env = {
        "BALANCER_API_KEYS_FILE": "/etc/keys.toml",
        "BALANCER_KEY_MAX_STREAMS": "3",
        "BALANCER_RESTRICT_OPS": "1",
    }
    config = parse_config(["--workers", "a:1"], env=env)
    assert config.api_keys_file == Path("/etc/keys.toml")
    assert config.key_max_streams == 3 and config.restrict_ops
    flags = ["--workers", "a:1", "--api-keys-file", "k.toml", "--key-max-streams", "2"]
    config = parse_config([*flags, "--no-restrict-ops"], env=env)
    assert config.api_keys_file == Path("k.toml") and config.key_max_streams == 2
    assert not config.restrict_ops
    with pytest.raises(SystemExit):
        parse_config(["--workers", "a:1", "--key-max-streams", "-1"], env={})


def test_workers_may_come_from_a_file_or_a_dns_name_or_all(tmp_path: Path) -> None:
    listed = tmp_path / "workers"
    listed.write_text("a:1\n")
    config = parse_config(["--workers-file", str(listed)], env={})
    assert config.workers == () and config.workers_file == listed
    assert config.workers_dns is None
    assert config.discovery_interval == DEFAULT_DISCOVERY_INTERVAL_S == 2.0
    env = {
        "BALANCER_WORKERS": "a:1",
        "BALANCER_WORKERS_FILE": str(listed),
        "BALANCER_WORKERS_DNS": "tts-workers.default.svc.cluster.local:6093",
        "BALANCER_DISCOVERY_INTERVAL": "5",
    }
    config = parse_config([], env=env)
    assert config.workers == ("http://a:1",) and config.workers_file == listed
    assert config.workers_dns == DnsName("tts-workers.default.svc.cluster.local", 6093)
    assert str(config.workers_dns) == "tts-workers.default.svc.cluster.local:6093"
    assert config.discovery_interval == 5
    config = parse_config(["--workers-dns", "[fd00::1]:80", "--discovery-interval", "0.5"], env={})
    assert config.workers_dns == DnsName("fd00::1", 80) and config.discovery_interval == 0.5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give the workers: --workers URL"),
        (["--workers", ""], "--workers-file PATH or --workers-dns NAME:PORT"),
        (["--workers-dns", "tts-workers"], "not NAME:PORT: 'tts-workers'"),
        (["--workers-dns", "tts:0"], "not NAME:PORT"),
        (["--workers-dns", "tts:http"], "not NAME:PORT"),
        (["--workers-dns", "http://tts:6093"], "not NAME:PORT"),
        (["--workers-file", "/nonexistent/workers"], "cannot read /nonexistent/workers"),
        (["--workers-file", "/"], "not a file: /"),
        (["--workers", "a:1", "--discovery-interval", "0"], "must be positive"),
    ],
)
def test_bad_worker_sources_are_refused_with_a_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_config(argv, env={})
    assert message in capsys.readouterr().err
