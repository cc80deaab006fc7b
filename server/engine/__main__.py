"""Stream one text to a WAV file and print each chunk's metrics as it arrives.

python -m server.engine --text "Hello." --out out.wav [--ckpt-dir DIR | --random-weights]
    [--model turbo|original|multilingual] [--language xx] [--device cuda] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from server.engine.engine import SAMPLE_RATE, EngineConfig, StreamingEngine, SynthesisRequest
from server.engine.loading import ModelDtype, ModelVariant, default_dtype, load_model

# Re-exported: the bench scripts and start_streaming_servers.sh import it from here.
from server.engine.random_checkpoint import random_checkpoint as random_checkpoint


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """`--device` and `--dtype`, as this command and the benchmarks take them."""
    parser.add_argument("--device", default=default_device())
    parser.add_argument(
        "--dtype",
        type=ModelDtype,
        choices=list(ModelDtype),
        help="T3's and the S3Gen flow's (default: bfloat16 on CUDA, float32 on the CPU)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--text", required=True)
    parser.add_argument("--out", type=Path, default=Path("out.wav"))
    parser.add_argument("--model", choices=[v.value for v in ModelVariant], default="turbo")
    parser.add_argument("--ckpt-dir", type=Path, default=os.environ.get("CKPT_DIR"))
    parser.add_argument("--random-weights", action="store_true")
    add_device_options(parser)
    parser.add_argument("--language", default="en", help="ISO 639-1 (multilingual model)")
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--no-watermark", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    variant = ModelVariant(args.model)
    ckpt_dir = args.ckpt_dir
    max_new_tokens = args.max_new_tokens
    if args.random_weights:
        print("WARNING: random weights: the output is noise, for smoke tests only", flush=True)
        ckpt_dir = random_checkpoint(variant)
        max_new_tokens = max_new_tokens or 150
    dtype = args.dtype or default_dtype(args.device)
    model = load_model(variant, ckpt_dir, args.device, dtype=dtype.torch_dtype)
    engine = StreamingEngine(model, EngineConfig(watermark=not args.no_watermark))
    request = SynthesisRequest(
        args.text,
        chunk_size=args.chunk_size,
        seed=args.seed,
        max_new_tokens=max_new_tokens,
        language=args.language,
    )
    pieces = []
    started = time.perf_counter()
    for chunk in engine.stream(request):
        pieces.append(chunk.audio)
        m = chunk.metrics
        print(
            f"chunk {chunk.chunk_id}: {chunk.audio.size / SAMPLE_RATE:.2f} s audio at "
            f"{time.perf_counter() - started:.2f} s (first {m.first_chunk_latency:.2f} s, "
            f"rtf {m.rtf:.2f}, total audio {m.total_audio_duration:.2f} s)",
            flush=True,
        )
    soundfile.write(args.out, np.concatenate(pieces), SAMPLE_RATE)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
