"""The worker's one configuration object, from command-line flags and environment variables.

Every field has a flag (`--max-batch`) and an environment variable with one prefix
(`CHATTERBOX_MAX_BATCH`); the names the first releases read (`MAX_BATCH`, `API_PORT`, ...) are
still accepted when the prefixed one is absent. A flag beats the prefixed variable, which beats
the old name, which beats the default. An empty variable counts as unset.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from server.engine.engine import EngineConfig
from server.engine.loading import CPU_DTYPE, CUDA_DTYPE, ModelDtype, ModelVariant, default_dtype

# Every interface: behind a balancer on another host, the worker must be reachable.
DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 6093
# What a `ServerConfig` built in code runs on; `parse_config` instead prefers cuda:0 when a GPU
# is visible (`default_device`).
DEFAULT_DEVICE = "cpu"
# Turbo: the faster variant, and the one the service is tuned for (docs/benchmarks.md). The
# original model speaks English too; the multilingual one 23 languages.
DEFAULT_MODEL = ModelVariant.TURBO
# None: the variant's official checkpoint from the Hugging Face hub (or its local cache).
DEFAULT_CKPT_DIR: Path | None = None
# Random weights serve noise: only ever on request, for smoke tests.
DEFAULT_RANDOM_WEIGHTS = False
DEFAULT_VOICES_DIR = Path("voices")
# Streams decoded together: on our 2-core CPU a batch of 4 gives ~1.9x the aggregate audio of
# one stream at a time and ~6x shorter waits for the first audio (docs/benchmarks.md); a
# GPU has room for more (--max-batch 8-16).
DEFAULT_MAX_BATCH = 4
# Running requests: by default, one batch (the parser follows --max-batch when it is raised).
DEFAULT_MAX_STREAMS = DEFAULT_MAX_BATCH
# Requests waiting for a slot, two default batches: past that a worker answers 503 with
# Retry-After, so the balancer can try another worker instead of queueing a long wait.
DEFAULT_MAX_QUEUE = 8
# Long texts are split into segments and streamed one after another, so this bounds the work
# of one request rather than the memory of one decoding step.
DEFAULT_MAX_TEXT_CHARS = 4096
# Room for a DEFAULT_MAX_PROMPT_SECONDS prompt as a 16-bit 48 kHz mono WAV (~5.5 MiB) or any
# compressed file; the balancer's body limit (16 MiB) is above it.
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# The speaker embedding reads the whole prompt (the rest of the voice only its first 10-15 s),
# and every new voice decodes and resamples all of it: 60 s bounds that work generously.
DEFAULT_MAX_PROMPT_SECONDS = EngineConfig.max_prompt_seconds
# Upstream Chatterbox marks every output with an imperceptible Perth watermark; so do we.
DEFAULT_WATERMARK = True
# On the CPU: oneDNN linear layers and native transposed convolutions (cpu_kernels.py), which
# are faster there and give the same audio.
DEFAULT_CPU_KERNELS = True
# The engine's: speech tokens (25 per second of audio) before the first chunk, few so that the
# first audio comes quickly; later chunks are larger.
DEFAULT_FIRST_CHUNK_TOKENS = EngineConfig.first_chunk_tokens
# The multilingual model's attention-based end-of-speech checks, on as in upstream 0.1.7 (its
# later releases drop them): off, a stream ends only on the model's stop token or its cap.
DEFAULT_ALIGNMENT_CHECKS = EngineConfig.alignment_checks
DEFAULT_LOG_LEVEL = "info"
# Text-in WebSockets (ElevenLabs' protocols): contexts open at once on one socket, as
# ElevenLabs allows, and text per context (about 20 minutes of speech).
DEFAULT_MAX_SOCKET_CONTEXTS = 5
DEFAULT_MAX_CONTEXT_CHARS = 20_000
# On SIGTERM a worker stops taking requests and lets the running ones finish for at most this
# long before it exits (a second SIGTERM or Ctrl-C stops it at once). Most streams end well
# within it; Kubernetes' default termination grace is also 30 s.
DEFAULT_DRAIN_TIMEOUT = 30.0
# One short synthesis through each path before /health says ready: otherwise the first request
# after a start pays one-time costs (seconds on the CPU; see server/warmup.py).
DEFAULT_WARMUP = True
# None: no keys, anyone who reaches the port may use the worker (fine on loopback behind the
# balancer, which checks keys: README, Keys). Otherwise a TOML file of keys (access/key_file.py).
DEFAULT_API_KEYS_FILE: Path | None = None
# Concurrent streams per key when its entry sets none; 0: no limit (the worker's own
# --max-streams and --max-queue still apply).
DEFAULT_KEY_MAX_STREAMS = 0
# /metrics is open (a scraper needs no key) unless asked: then it needs an admin key.
DEFAULT_RESTRICT_OPS = False
# torch's CPU threads (intra-op). None: on CUDA, DEFAULT_CUDA_THREADS; on the CPU, torch's own
# default (one per core), which the CPU worker's kernels want.
DEFAULT_THREADS: int | None = None
# A CUDA worker's CPU work is light (sampling, watermarking, encoding audio) and a host runs one
# worker per GPU: each taking every core would oversubscribe them several times over.
DEFAULT_CUDA_THREADS = 4
# TF32 for float32 matrix products and convolutions on CUDA (Ampere and later): tensor-core
# speed for a 10-bit mantissa in the products, which PyTorch already uses for convolutions by
# default. Never touched on the CPU.
DEFAULT_TF32 = True
# T3's and the S3Gen flow's dtype (the vocoder, voice encoders and sampling stay float32:
# server/engine/loading.py). None: the device's (`loading.default_dtype`): float32 on the CPU,
# where the packed oneDNN kernels are float32 only; bfloat16 on CUDA, chosen for the GPU check
# to confirm (loading.py says why; docs/architecture.md).
DEFAULT_DTYPE: ModelDtype | None = None

# The levels both `logging` and uvicorn know.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")

# A field's variable is ENV_PREFIX + its name in capitals: CHATTERBOX_MAX_BATCH.
ENV_PREFIX = "CHATTERBOX_"
# The names the first releases read, each accepted when its CHATTERBOX_ variable is absent.
ENV_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "host": "API_HOST",
        "port": "API_PORT",
        "device": "DEVICE",
        "model": "MODEL",
        "ckpt_dir": "CKPT_DIR",
        "random_weights": "RANDOM_WEIGHTS",
        "voices_dir": "VOICES_DIR",
        "max_streams": "MAX_STREAMS",
        "max_queue": "MAX_QUEUE",
        "max_batch": "MAX_BATCH",
        "max_text_chars": "MAX_TEXT_CHARS",
        "max_upload_bytes": "MAX_UPLOAD_BYTES",
        "watermark": "WATERMARK",
        "cpu_kernels": "CPU_KERNELS",
        "first_chunk_tokens": "FIRST_CHUNK_TOKENS",
        "log_level": "LOG_LEVEL",
    }
)


@dataclass(frozen=True)
class ServerConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    device: str = DEFAULT_DEVICE
    model: ModelVariant = DEFAULT_MODEL
    ckpt_dir: Path | None = DEFAULT_CKPT_DIR
    random_weights: bool = DEFAULT_RANDOM_WEIGHTS
    voices_dir: Path = DEFAULT_VOICES_DIR
    max_streams: int = DEFAULT_MAX_STREAMS
    max_queue: int = DEFAULT_MAX_QUEUE
    # Streams whose T3 decoding is batched on the device; 1 = one stream at a time.
    max_batch: int = DEFAULT_MAX_BATCH
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_prompt_seconds: float = DEFAULT_MAX_PROMPT_SECONDS
    watermark: bool = DEFAULT_WATERMARK
    cpu_kernels: bool = DEFAULT_CPU_KERNELS
    first_chunk_tokens: int = DEFAULT_FIRST_CHUNK_TOKENS
    alignment_checks: bool = DEFAULT_ALIGNMENT_CHECKS
    log_level: str = DEFAULT_LOG_LEVEL
    max_socket_contexts: int = DEFAULT_MAX_SOCKET_CONTEXTS
    max_context_chars: int = DEFAULT_MAX_CONTEXT_CHARS
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    warmup: bool = DEFAULT_WARMUP
    api_keys_file: Path | None = DEFAULT_API_KEYS_FILE
    key_max_streams: int = DEFAULT_KEY_MAX_STREAMS
    restrict_ops: bool = DEFAULT_RESTRICT_OPS
    threads: int | None = DEFAULT_THREADS
    tf32: bool = DEFAULT_TF32
    dtype: ModelDtype | None = DEFAULT_DTYPE

    @property
    def on_cuda(self) -> bool:
        return self.device.split(":", 1)[0] == "cuda"

    def torch_threads(self) -> int | None:
        """The threads to give torch at startup; None leaves its default alone."""
        if self.threads is not None:
            return self.threads
        return DEFAULT_CUDA_THREADS if self.on_cuda else None

    def model_dtype(self) -> ModelDtype:
        """T3's and the S3Gen flow's dtype: `dtype`, or the device's default."""
        return self.dtype if self.dtype is not None else default_dtype(self.device)

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            first_chunk_tokens=self.first_chunk_tokens,
            watermark=self.watermark,
            max_prompt_seconds=self.max_prompt_seconds,
            alignment_checks=self.alignment_checks,
        )


@dataclass(frozen=True)
class EnvSetting:
    """A field's value as the environment gives it: the variable's name and its text."""

    name: str
    text: str


def env_names(field: str) -> tuple[str, ...]:
    """The variables that may set a field, in order of precedence."""
    alias = ENV_ALIASES.get(field)
    return (ENV_PREFIX + field.upper(), *((alias,) if alias else ()))


def env_setting(env: Mapping[str, str], field: str) -> EnvSetting | None:
    """The first of the field's variables that is set (and not empty), if any."""
    for name in env_names(field):
        text = env.get(name, "").strip()
        if text:
            return EnvSetting(name, text)
    return None


def default_device(env: Mapping[str, str]) -> str:
    """CHATTERBOX_DEVICE (or DEVICE) when set; else cuda:0 when a GPU is visible
    (CUDA_VISIBLE_DEVICES picks which), else cpu."""
    found = env_setting(env, "device")
    if found is not None:
        return found.text
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


# Converters from text, for flags and variables alike; a bad value raises ArgumentTypeError.


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    return value


def _boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise argparse.ArgumentTypeError(
        f"expected one of {'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)}, got {text!r}"
    )


Choice = TypeVar("Choice", bound=StrEnum)


class _OneOf(Generic[Choice]):
    """Converts a flag's text to one of an enum's values (any case); shown as {a,b,...}."""

    def __init__(self, choices: type[Choice]):
        self.choices = choices
        self.metavar = "{" + ",".join(choice.value for choice in choices) + "}"

    def __call__(self, text: str) -> Choice:
        try:
            return self.choices(text.strip().lower())
        except ValueError:
            listed = ", ".join(choice.value for choice in self.choices)
            raise argparse.ArgumentTypeError(f"expected one of {listed}, got {text!r}") from None


_model = _OneOf(ModelVariant)
_dtype = _OneOf(ModelDtype)


def _log_level(text: str) -> str:
    level = text.strip().lower()
    if level not in LOG_LEVELS:
        choices = ", ".join(LOG_LEVELS)
        raise argparse.ArgumentTypeError(f"expected one of {choices}, got {text!r}")
    return level


def _path(text: str) -> Path:
    return Path(text)


def _text(text: str) -> str:
    return text


@dataclass(frozen=True)
class _FromEnv:
    """A default that came from the environment: converted after parsing, so that a flag
    overrides a bad variable, and a bad variable is reported by its name."""

    setting: EnvSetting
    convert: Callable[[str], Any]


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The worker's flags, with their defaults from `env` (still text: see `parse_config`)."""
    p = argparse.ArgumentParser(
        prog="python -m server",
        description="Chatterbox streaming worker. Every flag can also be set as "
        f"{ENV_PREFIX}<FLAG> (e.g. {ENV_PREFIX}MAX_BATCH); a flag wins over the variable.",
    )

    def option(
        flag: str,
        convert: Callable[[str], Any],
        default: Any,
        about: str,
        shown: str | None = None,  # the default in words, where None stands for a computed one
    ) -> None:
        field = flag.removeprefix("--").replace("-", "_")
        if shown is None:
            shown = ("on" if default else "off") if isinstance(default, bool) else str(default)
        helptext = f"{about} [env {' or '.join(env_names(field))}; default: {shown}]"
        if convert is _boolean:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=helptext)
        else:
            metavar = convert.metavar if isinstance(convert, _OneOf) else field.upper()
            p.add_argument(flag, type=convert, metavar=metavar, help=helptext)
        found = env_setting(env, field)
        # Set after add_argument: BooleanOptionalAction would otherwise repeat the default.
        p.set_defaults(**{field: default if found is None else _FromEnv(found, convert)})

    option("--host", _text, DEFAULT_HOST, "interface to listen on")
    option("--port", _whole, DEFAULT_PORT, "TCP port to listen on")
    option("--device", _text, None, "cuda:N or cpu", "cuda:0 if a GPU is visible, else cpu")
    option("--model", _model, DEFAULT_MODEL, "model variant", DEFAULT_MODEL.value)
    option(
        "--ckpt-dir",
        _path,
        DEFAULT_CKPT_DIR,
        "checkpoint directory in the official layout",
        "the official checkpoint from the Hugging Face hub",
    )
    option(
        "--random-weights",
        _boolean,
        DEFAULT_RANDOM_WEIGHTS,
        "serve a full-size random-weight checkpoint (noise; for smoke tests)",
    )
    option("--voices-dir", _path, DEFAULT_VOICES_DIR, "where uploaded voices are kept")
    option("--max-batch", _whole, DEFAULT_MAX_BATCH, "streams decoded together (1: one at a time)")
    option("--max-streams", _whole, None, "requests running at once", "--max-batch")
    option("--max-queue", _whole, DEFAULT_MAX_QUEUE, "requests waiting; more get 503")
    option("--max-text-chars", _whole, DEFAULT_MAX_TEXT_CHARS, "longest text of one request")
    option("--max-upload-bytes", _whole, DEFAULT_MAX_UPLOAD_BYTES, "largest audio prompt upload")
    option(
        "--max-prompt-seconds", _number, DEFAULT_MAX_PROMPT_SECONDS, "longest audio prompt, in s"
    )
    option("--watermark", _boolean, DEFAULT_WATERMARK, "watermark the audio (Perth)")
    option(
        "--cpu-kernels",
        _boolean,
        DEFAULT_CPU_KERNELS,
        "on the CPU, run linear layers through oneDNN with packed weights",
    )
    option(
        "--first-chunk-tokens",
        _whole,
        DEFAULT_FIRST_CHUNK_TOKENS,
        "speech tokens in the first chunk of a stream",
    )
    option(
        "--alignment-checks",
        _boolean,
        DEFAULT_ALIGNMENT_CHECKS,
        "multilingual model: upstream 0.1.7's attention-based end-of-speech checks",
    )
    option("--log-level", _log_level, DEFAULT_LOG_LEVEL, "one of " + ", ".join(LOG_LEVELS))
    option(
        "--max-socket-contexts",
        _whole,
        DEFAULT_MAX_SOCKET_CONTEXTS,
        "text-in contexts open at once on one WebSocket",
    )
    option("--max-context-chars", _whole, DEFAULT_MAX_CONTEXT_CHARS, "text of one text-in context")
    option(
        "--drain-timeout",
        _number,
        DEFAULT_DRAIN_TIMEOUT,
        "on SIGTERM, seconds running requests get to finish before the worker exits",
    )
    option(
        "--warmup",
        _boolean,
        DEFAULT_WARMUP,
        "run a short synthesis through each path before reporting ready",
    )
    option(
        "--api-keys-file",
        _path,
        DEFAULT_API_KEYS_FILE,
        "TOML file of API keys (name, role, sha256 or key, max_streams); every request but "
        "/health then needs one",
        "none: open to anyone who reaches the port",
    )
    option(
        "--key-max-streams",
        _whole,
        DEFAULT_KEY_MAX_STREAMS,
        "concurrent streams per key whose entry sets no max_streams (0: no limit)",
    )
    option(
        "--restrict-ops",
        _boolean,
        DEFAULT_RESTRICT_OPS,
        "with a keys file, /metrics needs an admin key",
    )
    option(
        "--threads",
        _whole,
        DEFAULT_THREADS,
        "torch's CPU threads (torch.set_num_threads)",
        f"{DEFAULT_CUDA_THREADS} on CUDA, torch's own (one per core) on the CPU",
    )
    option(
        "--tf32",
        _boolean,
        DEFAULT_TF32,
        "on CUDA, TF32 for float32 matrix products and convolutions (ignored on the CPU)",
    )
    option(
        "--dtype",
        _dtype,
        DEFAULT_DTYPE,
        "T3's and the S3Gen flow's dtype (vocoder and sampling stay float32)",
        f"{CUDA_DTYPE.value} on CUDA, {CPU_DTYPE.value} on the CPU",
    )
    return p


def parse_config(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> ServerConfig:
    env = os.environ if env is None else env
    p = build_parser(env)
    args = p.parse_args(argv)
    given_by: dict[str, str] = {}  # field -> the variable that set it

    for field, value in vars(args).items():
        if isinstance(value, _FromEnv):
            given_by[field] = value.setting.name
            try:
                setattr(args, field, value.convert(value.setting.text))
            except argparse.ArgumentTypeError as exc:
                p.error(f"{value.setting.name}: {exc}")

    def source(field: str) -> str:
        return given_by.get(field, "--" + field.replace("_", "-"))

    if args.device is None:
        args.device = default_device(env)
    if args.max_streams is None:
        args.max_streams = args.max_batch
    if not 0 <= args.port <= 65535:
        p.error(f"{source('port')} must be a port number (0-65535)")
    for field in (
        "max_batch",
        "max_streams",
        "first_chunk_tokens",
        "max_text_chars",
        "max_upload_bytes",
        "max_socket_contexts",
        "max_context_chars",
    ):
        if getattr(args, field) < 1:
            p.error(f"{source(field)} must be at least 1")
    if args.max_queue < 0:
        p.error(f"{source('max_queue')} must be at least 0")
    if args.max_prompt_seconds <= 0:
        p.error(f"{source('max_prompt_seconds')} must be positive")
    if args.drain_timeout < 0:
        p.error(f"{source('drain_timeout')} must be at least 0")
    if args.key_max_streams < 0:
        p.error(f"{source('key_max_streams')} must be at least 0")
    if args.threads is not None and args.threads < 1:
        p.error(f"{source('threads')} must be at least 1")
    return ServerConfig(
        host=args.host,
        port=args.port,
        device=args.device,
        model=args.model,
        ckpt_dir=args.ckpt_dir,
        random_weights=args.random_weights,
        voices_dir=args.voices_dir,
        max_streams=args.max_streams,
        max_queue=args.max_queue,
        max_batch=args.max_batch,
        max_text_chars=args.max_text_chars,
        max_upload_bytes=args.max_upload_bytes,
        max_prompt_seconds=args.max_prompt_seconds,
        watermark=args.watermark,
        cpu_kernels=args.cpu_kernels,
        first_chunk_tokens=args.first_chunk_tokens,
        alignment_checks=args.alignment_checks,
        log_level=args.log_level,
        max_socket_contexts=args.max_socket_contexts,
        max_context_chars=args.max_context_chars,
        drain_timeout=args.drain_timeout,
        warmup=args.warmup,
        api_keys_file=args.api_keys_file,
        key_max_streams=args.key_max_streams,
        restrict_ops=args.restrict_ops,
        threads=args.threads,
        tf32=args.tf32,
        dtype=args.dtype,
    )
