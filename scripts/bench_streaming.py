"""Regular vs streaming synthesis on one machine, same text and seed, in one run.

Prints a table; with --json PATH also writes the figures. Seam figures compare streamed audio
with offline decoding of the same tokens and noise (watermark off, so only the joins differ),
for our streamer and for the naive approach of seed 004 (each chunk decoded on its own with
upstream `s3gen.inference`).

    python scripts/bench_streaming.py [--ckpt-dir DIR] [--json out.json]

Without --ckpt-dir it builds (once) and uses the full-size random-weight Turbo checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.seam_metrics import SeamFigures, join_offsets, seam_figures
from server.engine.__main__ import default_device, random_checkpoint
from server.engine.conditionals import builtin_voice
from server.engine.engine import (
    SAMPLE_RATE,
    AudioChunk,
    EngineConfig,
    StreamingEngine,
    SynthesisRequest,
)
from server.engine.loading import ModelVariant, load_model
from server.engine.token2wav import NoiseTape, Token2WavStreamer
from server.engine.types import Audio

# About 10 s of speech at a normal pace; the cap keeps random weights (which never say EOS)
# at exactly 10 s.
DEFAULT_TEXT = (
    "Streaming speech synthesis starts playing while the model is still talking. "
    "The listener hears the first words after a fraction of the whole time."
)
TOKENS_FOR_10_S = 250


def _stream(engine: StreamingEngine, request: SynthesisRequest) -> tuple[list[AudioChunk], float]:
    started = time.perf_counter()
    chunks = list(engine.stream(request))
    return chunks, time.perf_counter() - started


def _naive_chunks(model: Any, tokens: list[int], lengths: list[int]) -> list[Audio]:
    """Seed 004's approach: every chunk decoded independently, no shared state."""
    voice = builtin_voice(model)
    assert voice is not None
    _, ref = voice.for_request(0.5, model.device)
    pieces, start = [], 0
    for size in lengths:
        part = torch.tensor(tokens[start : start + size], device=model.device)
        start += size
        # Upstream prints a line and a progress bar per call; keep the table readable.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            wav, _ = model.s3gen.inference(
                speech_tokens=part, ref_dict=dict(ref), n_cfm_timesteps=2
            )
        pieces.append(wav[0].cpu().numpy())
    return pieces


def _seams(
    model: Any, engine: StreamingEngine, tokens: list[int], seed: int, chunk_tokens: list[int]
) -> tuple[SeamFigures, SeamFigures]:
    """Our streamer and the naive one against offline decoding of the same tokens."""
    voice = builtin_voice(model)
    assert voice is not None
    _, ref = voice.for_request(0.5, model.device)
    cfg = engine.config
    all_tokens = torch.tensor(tokens, device=model.device)

    def streamer(reference: int | None) -> Token2WavStreamer:
        return Token2WavStreamer(
            model.s3gen,
            dict(ref),
            NoiseTape(seed + 1, model.device),
            meanflow=model.meanflow,
            n_timesteps=engine.n_timesteps,
            reference_tokens=reference,
            context_tokens=cfg.flow_context_tokens,
        )

    offline = streamer(None).decode_offline(all_tokens).cpu().numpy()
    ours = streamer(cfg.stream_reference_tokens)
    lookahead = ours.lookahead_tokens
    chunks, end = [], 0
    for count in chunk_tokens[:-1]:
        end += count
        chunks.append(ours.decode(all_tokens[: end + lookahead], finalize=False).cpu().numpy())
    chunks.append(ours.decode(all_tokens, finalize=True).cpu().numpy())
    streamed = np.concatenate(chunks)
    our_figures = seam_figures(streamed, offline, join_offsets([c.size for c in chunks]))

    naive = _naive_chunks(model, tokens, chunk_tokens)
    naive_audio = np.concatenate(naive)
    naive_figures = seam_figures(naive_audio, offline, join_offsets([c.size for c in naive]))
    return our_figures, naive_figures


def _upstream_load_seconds(ckpt_dir: Path, device: str) -> float:
    from chatterbox.tts_turbo import ChatterboxTurboTTS

    started = time.perf_counter()
    upstream = ChatterboxTurboTTS.from_local(ckpt_dir, device)
    seconds = time.perf_counter() - started
    del upstream
    gc.collect()
    return seconds


def report(figures: dict[str, Any], json_path: Path | None) -> None:
    """Print the figures as an aligned table and, if asked, write them as JSON."""
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ckpt-dir", type=Path)
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--text", default=DEFAULT_TEXT)
    parser.add_argument("--max-new-tokens", type=int, default=TOKENS_FOR_10_S)
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--first-chunk-tokens", type=int, default=EngineConfig.first_chunk_tokens)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    ckpt_dir = args.ckpt_dir or random_checkpoint(ModelVariant.TURBO)
    upstream_load_s = _upstream_load_seconds(ckpt_dir, args.device)  # also warms the page cache
    model = load_model(ModelVariant.TURBO, ckpt_dir, args.device)
    engine = StreamingEngine(model, EngineConfig(first_chunk_tokens=args.first_chunk_tokens))
    request = SynthesisRequest(
        args.text, chunk_size=args.chunk_size, seed=args.seed, max_new_tokens=args.max_new_tokens
    )
    # Warm-up: first calls pay one-off costs (allocator, kernels, Perth's first call).
    engine.synthesize(SynthesisRequest("Warm up.", seed=1, max_new_tokens=20))
    list(engine.stream(SynthesisRequest("Warm up.", seed=1, max_new_tokens=20)))

    regular_s, stream_s, ttfa_s = [], [], []
    chunks: list[AudioChunk] = []
    regular_audio = np.zeros(0, dtype=np.float32)
    for _ in range(args.repeats):
        started = time.perf_counter()
        regular = engine.synthesize(request)
        regular_s.append(time.perf_counter() - started)
        regular_audio = regular.audio
        chunks, total = _stream(engine, request)
        stream_s.append(total)
        ttfa_s.append(chunks[0].metrics.first_chunk_latency)
    summary = chunks[-1].summary
    assert summary is not None and summary.speech_tokens == regular.summary.speech_tokens
    streamed_audio = np.concatenate([c.audio for c in chunks])
    audio_s = streamed_audio.size / SAMPLE_RATE

    # Tokens per chunk as the engine emitted them (audio samples -> tokens).
    samples_per_token = 960
    chunk_tokens = [round(c.audio.size / samples_per_token) for c in chunks]
    tokens = [t for t in summary.speech_tokens if t < 6561] + [4299] * 3
    chunk_tokens[-1] = len(tokens) - sum(chunk_tokens[:-1])
    ours, naive = _seams(model, engine, tokens, summary.seed, chunk_tokens)

    regular_total = statistics.median(regular_s)
    stream_total = statistics.median(stream_s)
    ttfa = statistics.median(ttfa_s)
    figures = {
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "speech_tokens": len(summary.speech_tokens),
        "audio_s": round(audio_s, 3),
        "chunks": len(chunks),
        "load_s": round(model.load_seconds, 3),
        "upstream_from_local_s": round(upstream_load_s, 3),
        "ttfa_s": round(ttfa, 3),
        "regular_total_s": round(regular_total, 3),
        "stream_total_s": round(stream_total, 3),
        "ttfa_ratio": round(ttfa / regular_total, 4),
        "overhead_ratio": round(stream_total / regular_total, 4),
        "rtf_stream": round(stream_total / audio_s, 4),
        "rtf_regular": round(regular_total / (regular_audio.size / SAMPLE_RATE), 4),
        "seam_lsd_db": round(ours.seam_lsd_db, 3),
        "body_lsd_db": round(ours.body_lsd_db, 3),
        "seam_to_body": round(ours.seam_to_body, 3),
        "join_energy_ratio": round(ours.join_energy_ratio, 3),
        "naive_seam_lsd_db": round(naive.seam_lsd_db, 3),
        "naive_body_lsd_db": round(naive.body_lsd_db, 3),
        "naive_seam_to_body": round(naive.seam_to_body, 3),
        "naive_join_energy_ratio": round(naive.join_energy_ratio, 3),
        "chunk_size": args.chunk_size,
        "first_chunk_tokens": args.first_chunk_tokens,
        "stream_reference_tokens": engine.config.stream_reference_tokens,
        "flow_context_tokens": engine.config.flow_context_tokens,
        "repeats": args.repeats,
    }
    report(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
