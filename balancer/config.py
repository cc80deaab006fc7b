"""The balancer's one configuration object, from command-line flags and environment variables."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from balancer.policies import POLICIES

DEFAULT_PORT = 6095
# How often --workers-file is looked at and --workers-dns resolved again: a worker added there
# is in rotation within this plus one health check.
DEFAULT_DISCOVERY_INTERVAL_S = 2.0
DEFAULT_POLICY = "least-loaded"
DEFAULT_HEALTH_INTERVAL_S = 2.0
DEFAULT_HEALTH_TIMEOUT_S = 2.0
DEFAULT_CONNECT_TIMEOUT_S = 3.0
# The longest silence a healthy worker may keep: SSE streams ping every 5 s, but a plain
# `/synthesize` sends nothing until the whole WAV is ready, which takes minutes on a CPU.
DEFAULT_READ_TIMEOUT_S = 600.0
# Inside an event stream a worker pings every 5 s, so this much silence means a stuck worker:
# the client gets an error event (or the request another worker) instead of waiting on.
DEFAULT_STREAM_IDLE_TIMEOUT_S = 60.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BREAKER_FAILURES = 3
DEFAULT_BREAKER_COOLDOWN_S = 5.0
# Workers accept 10 MiB audio prompts plus the form around them.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_RETRY_AFTER_S = 2
DEFAULT_STATIC_DIR = Path("frontend/dist")
DEFAULT_SHUTDOWN_GRACE_S = 5.0
# A WebSocket handshake with a worker is a TCP connect and one HTTP exchange: a worker that has
# not accepted within this long is treated like one that refused, and another is tried.
DEFAULT_WS_HANDSHAKE_TIMEOUT_S = 10.0
# The largest WebSocket message relayed either way (websockets' own default, 1 MiB, is less
# than a long utterance of base64 audio in one ElevenLabs-style JSON message).
DEFAULT_WS_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# None: no keys, open to anyone who reaches the port (a warning at startup unless the balancer
# listens on loopback). Otherwise a TOML file of keys (access/key_file.py; README, Keys).
DEFAULT_API_KEYS_FILE: Path | None = None
# Concurrent streams (and WebSockets) per key when its entry sets none; 0: no limit.
DEFAULT_KEY_MAX_STREAMS = 0
# /stats and /metrics stay open (the start script and scrapers read them) unless asked.
DEFAULT_RESTRICT_OPS = False


@dataclass(frozen=True)
class DnsName:
    """`--workers-dns NAME:PORT`: every address NAME resolves to is a worker on PORT."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class BalancerConfig:
    workers: tuple[str, ...]  # --workers: always in the pool
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    policy: str = DEFAULT_POLICY
    health_interval: float = DEFAULT_HEALTH_INTERVAL_S
    health_timeout: float = DEFAULT_HEALTH_TIMEOUT_S
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S
    read_timeout: float | None = DEFAULT_READ_TIMEOUT_S
    stream_idle_timeout: float | None = DEFAULT_STREAM_IDLE_TIMEOUT_S
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    breaker_failures: int = DEFAULT_BREAKER_FAILURES
    breaker_cooldown: float = DEFAULT_BREAKER_COOLDOWN_S
    voice_broadcast: bool = False
    static_dir: Path | None = DEFAULT_STATIC_DIR
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    retry_after: int = DEFAULT_RETRY_AFTER_S
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE_S
    ws_handshake_timeout: float = DEFAULT_WS_HANDSHAKE_TIMEOUT_S
    ws_max_message_bytes: int = DEFAULT_WS_MAX_MESSAGE_BYTES
    log_level: str = "info"
    api_keys_file: Path | None = DEFAULT_API_KEYS_FILE
    key_max_streams: int = DEFAULT_KEY_MAX_STREAMS
    restrict_ops: bool = DEFAULT_RESTRICT_OPS
    # Workers that may change while the balancer runs (balancer/discovery/), with `workers`.
    workers_file: Path | None = None
    workers_dns: DnsName | None = None
    discovery_interval: float = DEFAULT_DISCOVERY_INTERVAL_S
    # An admin key for the supervisor of `start_streaming_servers.sh` (its readiness checks read
    # /stats, which `--restrict-ops` closes), from the environment only: never in argv or repr.
    supervisor_key: str | None = field(default=None, repr=False)


SUPERVISOR_KEY_ENV = "BALANCER_SUPERVISOR_KEY"
SUPERVISOR_KEY_NAME = "supervisor"  # the name /stats and the logs show for it


def worker_url(raw: str) -> str:
    """A worker's base URL: scheme added when missing, no trailing slash, no path."""
    text = raw.strip()
    if "://" not in text:
        text = f"http://{text}"
    url = httpx.URL(text)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"not a worker URL: {raw!r}")
    if url.path not in ("", "/") or url.query:
        raise ValueError(f"a worker URL has no path or query: {raw!r}")
    return str(url.copy_with(path="/")).rstrip("/")


def parse_workers(text: str) -> tuple[str, ...]:
    urls = tuple(worker_url(part) for part in text.split(",") if part.strip())
    if not urls:
        raise ValueError("give at least one worker URL")
    if len(set(urls)) != len(urls):
        raise ValueError("a worker URL is listed twice")
    return urls


def dns_name(text: str) -> DnsName:
    host, colon, port = text.strip().rpartition(":")
    if not colon or not host or "/" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not NAME:PORT: {text!r}")
    return DnsName(host.strip("[]"), int(port))


def parse_config(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> BalancerConfig:
    env = os.environ if env is None else env
    d = BalancerConfig(workers=())

    def default(name: str, value: object) -> str | None:
        found = env.get(f"BALANCER_{name}")
        return found if found is not None else (None if value is None else str(value))

    p = argparse.ArgumentParser(
        prog="python -m balancer",
        description="Least-loaded SSE load balancer for Chatterbox streaming workers. "
        "Every flag can also be set as BALANCER_<FLAG> (e.g. BALANCER_WORKERS).",
    )
    p.add_argument(
        "--workers",
        default=default("WORKERS", None),
        help="comma-separated worker URLs, e.g. http://10.0.0.5:6093,http://10.0.0.6:6093",
    )
    p.add_argument(
        "--workers-file",
        default=default("WORKERS_FILE", None),
        help="a file of worker URLs, one a line (# comments), read again whenever it changes: "
        "added workers join once healthy, removed ones finish their streams, then leave",
    )
    p.add_argument(
        "--workers-dns",
        default=default("WORKERS_DNS", None),
        help="NAME:PORT: the addresses NAME resolves to, resolved again every "
        "--discovery-interval, are the workers (e.g. a Kubernetes headless service)",
    )
    p.add_argument(
        "--discovery-interval",
        type=float,
        default=default("DISCOVERY_INTERVAL", d.discovery_interval),
        help="seconds between looks at --workers-file and resolutions of --workers-dns",
    )
    p.add_argument("--host", default=default("HOST", d.host))
    p.add_argument("--port", type=int, default=default("PORT", d.port))
    p.add_argument("--policy", choices=sorted(POLICIES), default=default("POLICY", d.policy))
    p.add_argument(
        "--health-interval",
        type=float,
        default=default("HEALTH_INTERVAL", d.health_interval),
        help="seconds between active /health checks of each worker",
    )
    p.add_argument(
        "--health-timeout", type=float, default=default("HEALTH_TIMEOUT", d.health_timeout)
    )
    p.add_argument(
        "--connect-timeout", type=float, default=default("CONNECT_TIMEOUT", d.connect_timeout)
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=default("READ_TIMEOUT", d.read_timeout),
        help="longest silence allowed from a worker, in seconds (0: no limit)",
    )
    p.add_argument(
        "--stream-idle-timeout",
        type=float,
        default=default("STREAM_IDLE_TIMEOUT", d.stream_idle_timeout),
        help="longest silence allowed inside an event stream, in seconds (0: --read-timeout)",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        default=default("MAX_ATTEMPTS", d.max_attempts),
        help="workers tried per request before giving up (failover before the first byte)",
    )
    p.add_argument(
        "--breaker-failures",
        type=int,
        default=default("BREAKER_FAILURES", d.breaker_failures),
        help="consecutive failures that take a worker out of rotation",
    )
    p.add_argument(
        "--breaker-cooldown",
        type=float,
        default=default("BREAKER_COOLDOWN", d.breaker_cooldown),
        help="seconds out of rotation before a health check may re-admit the worker",
    )
    p.add_argument(
        "--voice-broadcast",
        action=argparse.BooleanOptionalAction,
        default=default("VOICE_BROADCAST", "0") not in ("0", "", "false"),
        help="send voice uploads and deletions to every healthy worker (multi-host "
        "deployments whose workers do not share a voices directory)",
    )
    p.add_argument(
        "--static-dir",
        default=default("STATIC_DIR", d.static_dir),
        help="built frontend served at / when the directory exists ('' to disable)",
    )
    p.add_argument(
        "--max-body-bytes", type=int, default=default("MAX_BODY_BYTES", d.max_body_bytes)
    )
    p.add_argument("--retry-after", type=int, default=default("RETRY_AFTER", d.retry_after))
    p.add_argument(
        "--shutdown-grace",
        type=float,
        default=default("SHUTDOWN_GRACE", d.shutdown_grace),
        help="seconds open streams get to finish on shutdown",
    )
    p.add_argument(
        "--ws-handshake-timeout",
        type=float,
        default=default("WS_HANDSHAKE_TIMEOUT", d.ws_handshake_timeout),
        help="seconds a worker gets to accept a WebSocket before another is tried",
    )
    p.add_argument(
        "--ws-max-message-bytes",
        type=int,
        default=default("WS_MAX_MESSAGE_BYTES", d.ws_max_message_bytes),
        help="largest WebSocket message relayed, either way",
    )
    p.add_argument("--log-level", default=default("LOG_LEVEL", d.log_level))
    p.add_argument(
        "--api-keys-file",
        default=default("API_KEYS_FILE", d.api_keys_file),
        help="TOML file of API keys (name, role, sha256 or key, max_streams): every request "
        "but /health and the web app's files then needs one (default: none, open)",
    )
    p.add_argument(
        "--key-max-streams",
        type=int,
        default=default("KEY_MAX_STREAMS", d.key_max_streams),
        help="concurrent streams per key whose entry sets no max_streams (0: no limit)",
    )
    p.add_argument(
        "--restrict-ops",
        action=argparse.BooleanOptionalAction,
        default=default("RESTRICT_OPS", "0") not in ("0", "", "false"),
        help="with a keys file, /stats and /metrics need an admin key",
    )
    args = p.parse_args(argv)
    if not (args.workers or args.workers_file or args.workers_dns):
        p.error(
            "give the workers: --workers URL[,URL...], --workers-file PATH or --workers-dns "
            "NAME:PORT (or BALANCER_WORKERS, BALANCER_WORKERS_FILE, BALANCER_WORKERS_DNS)"
        )
    try:
        workers = parse_workers(args.workers) if args.workers else ()
        workers_dns = dns_name(args.workers_dns) if args.workers_dns else None
    except ValueError as exc:
        p.error(str(exc))
    workers_file = Path(args.workers_file) if args.workers_file else None
    # Checked once here, so a wrong path stops the start; later the file may be replaced.
    if workers_file is not None and not os.access(workers_file, os.R_OK):
        p.error(f"--workers-file: cannot read {workers_file}")
    if workers_file is not None and not workers_file.is_file():
        p.error(f"--workers-file: not a file: {workers_file}")
    if int(args.key_max_streams) < 0:
        p.error("--key-max-streams must be at least 0")
    for name in ("max_attempts", "breaker_failures", "max_body_bytes", "ws_max_message_bytes"):
        if int(getattr(args, name)) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    positive = ("health_interval", "health_timeout", "connect_timeout", "ws_handshake_timeout")
    for name in (*positive, "discovery_interval"):
        if float(getattr(args, name)) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    read_timeout = float(args.read_timeout)
    idle_timeout = float(args.stream_idle_timeout)
    return BalancerConfig(
        workers=workers,
        host=args.host,
        port=int(args.port),
        policy=args.policy,
        health_interval=float(args.health_interval),
        health_timeout=float(args.health_timeout),
        connect_timeout=float(args.connect_timeout),
        read_timeout=read_timeout if read_timeout > 0 else None,
        stream_idle_timeout=idle_timeout if idle_timeout > 0 else None,
        max_attempts=int(args.max_attempts),
        breaker_failures=int(args.breaker_failures),
        breaker_cooldown=max(0.0, float(args.breaker_cooldown)),
        voice_broadcast=bool(args.voice_broadcast),
        static_dir=Path(args.static_dir) if args.static_dir else None,
        max_body_bytes=int(args.max_body_bytes),
        retry_after=max(0, int(args.retry_after)),
        shutdown_grace=max(0.0, float(args.shutdown_grace)),
        ws_handshake_timeout=float(args.ws_handshake_timeout),
        ws_max_message_bytes=int(args.ws_max_message_bytes),
        log_level=args.log_level,
        api_keys_file=Path(args.api_keys_file) if args.api_keys_file else None,
        key_max_streams=int(args.key_max_streams),
        restrict_ops=bool(args.restrict_ops),
        workers_file=workers_file,
        workers_dns=workers_dns,
        discovery_interval=float(args.discovery_interval),
        supervisor_key=env.get(SUPERVISOR_KEY_ENV) or None,
    )
