"""`python -m balancer --workers URL[,URL...]` (or `--workers-file PATH`, `--workers-dns
NAME:PORT`): the load balancer in front of the workers."""

from __future__ import annotations

import contextlib
import logging
import resource
import sys

import uvicorn

from access.exposure import open_warning
from access.key_file import KeyFileError
from balancer.app import create_app
from balancer.config import BalancerConfig, parse_config
from edge.deadlines import DeadlineProtocol


def raise_open_file_limit() -> None:
    """Each stream holds two sockets (client and worker): 1024 descriptors, the usual soft
    limit, caps a balancer near 500 streams, so take whatever the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def log_workers(config: BalancerConfig) -> None:
    logger = logging.getLogger("balancer")
    if config.workers:
        logger.info(
            "balancing %d worker(s) with %s: %s",
            len(config.workers),
            config.policy,
            ", ".join(config.workers),
        )
    every, policy = config.discovery_interval, config.policy
    if config.workers_file is not None:
        path = config.workers_file
        logger.info(
            "balancing with %s the workers %s lists (looked at every %g s)", policy, path, every
        )
    if config.workers_dns is not None:
        name = config.workers_dns
        logger.info(
            "balancing with %s the addresses of %s (resolved every %g s)", policy, name, every
        )


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request at INFO: one line per stream and health check is noise here.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    raise_open_file_limit()
    try:
        app = create_app(config)
    except KeyFileError as exc:
        print(f"python -m balancer: error: --api-keys-file: {exc}", file=sys.stderr)
        return 2
    warning = None if config.api_keys_file else open_warning(config.host, config.port, "balancer")
    if warning is not None:
        logging.getLogger("balancer").warning(warning)
    log_workers(config)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        # Open streams get this long to finish on shutdown, then they are cut (uvicorn takes
        # whole seconds, and None would mean waiting for every stream to end).
        timeout_graceful_shutdown=max(1, round(config.shutdown_grace)),
        # The workers' Date and Server headers are relayed; ours would duplicate them.
        server_header=False,
        date_header=False,
        # Slow or silent clients cannot hold connections forever.
        http=DeadlineProtocol,
        # Relayed WebSocket messages: the same limit as towards the workers. No per-message
        # compression (uvicorn's default): it would deflate every audio frame for every client
        # on the balancer's CPU, for audio that barely compresses.
        ws_max_size=config.ws_max_message_bytes,
        ws_per_message_deflate=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
