"""A real worker process (the real HTTP app) over the fake engine, for balancer and browser tests.

python -m tests.fake_worker --port 7001 [--chunks 5] [--delay 0.1] [--fail-after N]
    [--die-after N] [--drain-timeout S] [--warmup]

It also takes the flags `start_streaming_servers.sh` gives a real worker (`--model`,
`--device`, ...; ignored), so the start script can run it instead (`--worker-module`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.app import create_app
from server.config import DEFAULT_DRAIN_TIMEOUT, ServerConfig
from server.drain import serve
from tests.fakes import FakeEngine


def dying_after(app: ASGIApp, chunks: int) -> ASGIApp:
    """Kill the whole process, as a crash would, once `chunks` audio chunks have been sent
    (0: right after a stream's response headers), for balancer failover tests."""
    sent = 0

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def watched(message: Message) -> None:
            nonlocal sent
            await send(message)
            if message["type"] == "websocket.send" and _carries_audio(message):
                sent += 1  # a WebSocket's audio frame or message counts as a chunk
                if sent >= max(chunks, 1):
                    os._exit(1)
            if scope.get("path") != "/synthesize-stream":
                return
            if message["type"] == "http.response.start" and chunks == 0:
                os._exit(1)
            if message["type"] == "http.response.body" and b"audio_chunk" in message["body"]:
                sent += 1
                if sent >= chunks:
                    os._exit(1)

        await app(scope, receive, watched)

    return wrapped


def _carries_audio(message: Message) -> bool:
    return message.get("bytes") is not None or '"audio"' in (message.get("text") or "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.1, help="seconds per chunk")
    parser.add_argument("--chunk-seconds", type=float, default=0.2, help="audio per chunk")
    parser.add_argument("--fail-after", type=int, help="fail every stream after N chunks")
    parser.add_argument("--load-delay", type=float, default=0.0, help="seconds 'loading'")
    parser.add_argument("--max-streams", type=int, default=4)
    parser.add_argument("--max-queue", type=int, default=16)
    parser.add_argument("--voices-dir", type=Path)
    parser.add_argument(
        "--die-after", type=int, help="exit abruptly after sending N audio chunks (0: headers)"
    )
    parser.add_argument("--drain-timeout", type=float, default=DEFAULT_DRAIN_TIMEOUT)
    parser.add_argument(
        "--languages", default="en", help="comma-separated ISO 639-1 codes the model 'speaks'"
    )
    # Off by default: with the fake engine a warm-up only makes every test's workers slower.
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=False)
    for ignored in ("--model", "--device", "--ckpt-dir", "--max-batch", "--log-level"):
        parser.add_argument(ignored, help="ignored (the start script passes it)")
    parser.add_argument("--random-weights", action="store_true", help="ignored")
    args = parser.parse_args(argv)
    engine = FakeEngine(
        chunk_seconds=args.chunk_seconds,
        delay=args.delay,
        chunks=args.chunks,
        fail_after=args.fail_after,
        languages=tuple(args.languages.split(",")),
    )

    def factory() -> FakeEngine:
        time.sleep(args.load_delay)
        return engine

    config = ServerConfig(
        host=args.host,
        port=args.port,
        voices_dir=args.voices_dir or Path(tempfile.mkdtemp(prefix="fake-voices-")),
        max_streams=args.max_streams,
        max_queue=args.max_queue,
        log_level="warning",
        drain_timeout=args.drain_timeout,
        warmup=args.warmup,
    )
    worker_app = create_app(config, factory)
    app: ASGIApp = worker_app
    if args.die_after is not None:
        app = dying_after(app, args.die_after)
    serve(app, worker_app.state.worker, config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
