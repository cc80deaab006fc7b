"""The worker's one configuration object, from command-line flags and environment variables."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from server.engine.engine import EngineConfig
from server.engine.loading import ModelVariant

DEFAULT_PORT = 6093
# Streams decoded together: on our 2-core CPU a batch of 4 gives ~1.9x the aggregate audio of
# one stream at a time and ~6x shorter waits for the first audio (docs/benchmarks.md); a
# GPU has room for more (--max-batch 8-16).
DEFAULT_MAX_BATCH = 4
DEFAULT_MAX_QUEUE = 8
DEFAULT_MAX_TEXT_CHARS = 4096
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PROMPT_SECONDS = 60.0


@dataclass(frozen=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    device: str = "cpu"
    model: ModelVariant = ModelVariant.TURBO
    ckpt_dir: Path | None = None
    random_weights: bool = False
    voices_dir: Path = Path("voices")
    max_streams: int = DEFAULT_MAX_BATCH  # running requests: by default, one batch
    max_queue: int = DEFAULT_MAX_QUEUE
    # Streams whose T3 decoding is batched on the device; 1 = one stream at a time.
    max_batch: int = DEFAULT_MAX_BATCH
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_prompt_seconds: float = DEFAULT_MAX_PROMPT_SECONDS
    watermark: bool = True
    # On the CPU: oneDNN linear layers and native transposed convolutions (cpu_kernels.py).
    cpu_kernels: bool = True
    first_chunk_tokens: int = EngineConfig.first_chunk_tokens
    log_level: str = "info"

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            first_chunk_tokens=self.first_chunk_tokens,
            watermark=self.watermark,
            max_prompt_seconds=self.max_prompt_seconds,
        )


def default_device(env: Mapping[str, str]) -> str:
    """cuda:0 when a GPU is visible (CUDA_VISIBLE_DEVICES picks which), else cpu."""
    import torch

    if env.get("DEVICE"):
        return env["DEVICE"]
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def parse_config(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> ServerConfig:
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(prog="python -m server", description="Chatterbox streaming worker")
    p.add_argument("--host", default=env.get("API_HOST", ServerConfig.host))
    p.add_argument("--port", type=int, default=int(env.get("API_PORT", DEFAULT_PORT)))
    p.add_argument("--device", default=None, help="cuda:N or cpu (default: cuda:0 if available)")
    p.add_argument(
        "--model",
        choices=[v.value for v in ModelVariant],
        default=env.get("MODEL", ModelVariant.TURBO.value),
    )
    p.add_argument("--ckpt-dir", type=Path, default=env.get("CKPT_DIR"))
    p.add_argument(
        "--random-weights",
        action="store_true",
        default=env.get("RANDOM_WEIGHTS", "") == "1",
        help="serve a full-size random-weight checkpoint (noise; for smoke tests)",
    )
    p.add_argument("--voices-dir", type=Path, default=env.get("VOICES_DIR", "voices"))
    p.add_argument(
        "--max-batch",
        type=int,
        default=int(env.get("MAX_BATCH", DEFAULT_MAX_BATCH)),
        help=f"streams decoded together (default {DEFAULT_MAX_BATCH}; 1: one at a time)",
    )
    p.add_argument(
        "--max-streams",
        type=int,
        default=int(env["MAX_STREAMS"]) if "MAX_STREAMS" in env else None,
        help="requests running at once (default: --max-batch)",
    )
    p.add_argument("--max-queue", type=int, default=int(env.get("MAX_QUEUE", DEFAULT_MAX_QUEUE)))
    p.add_argument(
        "--max-text-chars", type=int, default=int(env.get("MAX_TEXT_CHARS", DEFAULT_MAX_TEXT_CHARS))
    )
    p.add_argument(
        "--max-upload-bytes",
        type=int,
        default=int(env.get("MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES)),
    )
    p.add_argument(
        "--watermark",
        action=argparse.BooleanOptionalAction,
        default=env.get("WATERMARK", "1") != "0",
    )
    p.add_argument(
        "--cpu-kernels",
        action=argparse.BooleanOptionalAction,
        default=env.get("CPU_KERNELS", "1") != "0",
        help="on the CPU, run linear layers through oneDNN with packed weights (default: on)",
    )
    p.add_argument(
        "--first-chunk-tokens",
        type=int,
        default=int(env.get("FIRST_CHUNK_TOKENS", EngineConfig.first_chunk_tokens)),
    )
    p.add_argument("--log-level", default=env.get("LOG_LEVEL", "info"))
    args = p.parse_args(argv)
    if args.max_streams is None:
        args.max_streams = args.max_batch
    for name in (
        "max_batch",
        "max_streams",
        "first_chunk_tokens",
        "max_text_chars",
        "max_upload_bytes",
    ):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_queue < 0:
        p.error("--max-queue must be at least 0")
    return ServerConfig(
        host=args.host,
        port=args.port,
        device=args.device or default_device(env),
        model=ModelVariant(args.model),
        ckpt_dir=args.ckpt_dir,
        random_weights=args.random_weights,
        voices_dir=args.voices_dir,
        max_streams=args.max_streams,
        max_queue=args.max_queue,
        max_batch=args.max_batch,
        max_text_chars=args.max_text_chars,
        max_upload_bytes=args.max_upload_bytes,
        watermark=args.watermark,
        cpu_kernels=args.cpu_kernels,
        first_chunk_tokens=args.first_chunk_tokens,
        log_level=args.log_level,
    )
