"""Regular vs streaming synthesis on one machine, same text and seed, in one run.

Prints a table; with --json PATH also writes the figures. Seam figures compare streamed audio
with offline decoding of the same tokens and noise (watermark off, so only the joins differ),
for our streamer and for the naive approach of seed 004 (each chunk decoded on its own with
upstream `s3gen.inference`).

    python scripts/bench_streaming.py [--model turbo|original|multilingual] [--ckpt-dir DIR]
        [--baseline-ckpt-dir DIR] [--language en] [--device cuda:0] [--dtype bfloat16]
        [--json out.json]

--model other than turbo (the default) measures Turbo first, as the baseline, then that model,
one model in memory at a time, and prints the figures side by side (one column per model);
--json then writes {"baseline": "turbo", "model": ..., "models": {"turbo": {...}, ...}}, each
model's figures as a Turbo-only run writes them (at the top level). --ckpt-dir is the
checkpoint of --model, --baseline-ckpt-dir Turbo's when it is the baseline; without them it
builds (once) and uses the full-size random-weight checkpoint of each model. --language is the
multilingual model's (the others speak English only).
"""

from __future__ import annotations

import argparse
import contextlib
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
from server.engine.__main__ import add_device_options, random_checkpoint
from server.engine.conditionals import builtin_voice
from server.engine.engine import (
    SAMPLE_RATE,
    AudioChunk,
    EngineConfig,
    StreamingEngine,
    SynthesisRequest,
)
from server.engine.loading import ModelVariant, default_dtype, load_model
from server.engine.memory import give_memory_back
from server.engine.random_multilingual_text import upstream_offline
from server.engine.schema import (
    DEFAULT_LANGUAGE,
    SILENCE_TOKEN,
    SPEECH_VOCAB_SIZE,
    TRAILING_SILENCE_TOKENS,
    FlowWindow,
)
from server.engine.token2wav import NoiseTape, Token2WavStreamer
from server.engine.types import Audio
from server.forms import default_params

# About 10 s of speech at a normal pace; the cap keeps random weights (which never say EOS)
# at exactly 10 s.
DEFAULT_TEXT = (
    "Streaming speech synthesis starts playing while the model is still talking. "
    "The listener hears the first words after a fraction of the whole time."
)
TOKENS_FOR_10_S = 250
SAMPLES_PER_TOKEN = 960  # 25 speech tokens per second at 24 kHz


def _stream(engine: StreamingEngine, request: SynthesisRequest) -> tuple[list[AudioChunk], float]:
    started = time.perf_counter()
    chunks = list(engine.stream(request))
    return chunks, time.perf_counter() - started


def _naive_chunks(
    model: Any, n_timesteps: int, tokens: list[int], lengths: list[int]
) -> list[Audio]:
    """Seed 004's approach: every chunk decoded independently, no shared state."""
    voice = builtin_voice(model)
    assert voice is not None
    _, ref = voice.for_request(0.5, model.device)
    pieces, start = [], 0
    for size in lengths:
        part = torch.tensor(tokens[start : start + size], device=model.device)
        start += size
        # Upstream prints a line and a progress bar per call; keep the table readable.
        with (
            torch.inference_mode(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            mel = _upstream_flow(model.s3gen, part, ref, model.meanflow, n_timesteps)
            # Upstream `s3gen.inference` from here, with the mel frames in the vocoder's
            # float32 (upstream casts them to the flow's dtype, which HiFT refuses in 16 bits).
            source = torch.zeros(1, 1, 0, device=model.device)
            wav, _ = model.s3gen.hift_inference(mel.float(), source)
            wav[:, : len(model.s3gen.trim_fade)] *= model.s3gen.trim_fade
        pieces.append(wav[0].cpu().numpy())
    return pieces


def _upstream_flow(
    s3gen: Any, tokens: torch.Tensor, ref: dict[str, Any], meanflow: bool, n_timesteps: int
) -> torch.Tensor:
    """Upstream `S3Token2Wav.flow_inference` on one chunk: Turbo's mean-flow (its noise drawn
    here, as upstream does), or the other models' flow matching (the decoder draws its own).
    Upstream casts every tensor of the reference to the flow's dtype, its token ids and lengths
    too, which 16 bits round (a prompt of 267 tokens becomes 268, and the call fails): only the
    floating ones are cast here, which changes nothing in float32."""
    cast = {key: _floating_as(value, s3gen.dtype) for key, value in ref.items()}
    noise = None
    if meanflow:
        noise = torch.randn(1, 80, tokens.size(-1) * 2, dtype=s3gen.dtype, device=s3gen.device)
    out = s3gen.flow.inference(
        token=tokens[None],
        token_len=torch.tensor([tokens.size(-1)], device=s3gen.device),
        finalize=True,
        noised_mels=noise,
        n_timesteps=n_timesteps,
        meanflow=meanflow,
        **cast,
    )
    mel: torch.Tensor = out[0]
    return mel


def _floating_as(value: Any, dtype: torch.dtype) -> Any:
    return value.to(dtype) if torch.is_tensor(value) and value.is_floating_point() else value


def _seams(
    model: Any,
    engine: StreamingEngine,
    window: FlowWindow,
    tokens: list[int],
    seed: int,
    chunk_tokens: list[int],
) -> tuple[SeamFigures, SeamFigures]:
    """Our streamer and the naive one against offline decoding of the same tokens."""
    voice = builtin_voice(model)
    assert voice is not None
    _, ref = voice.for_request(0.5, model.device)
    all_tokens = torch.tensor(tokens, device=model.device)

    def streamer(reference: int | None) -> Token2WavStreamer:
        return Token2WavStreamer(
            model.s3gen,
            dict(ref),
            NoiseTape(seed + 1, model.device),
            meanflow=model.meanflow,
            n_timesteps=engine.n_timesteps,
            reference_tokens=reference,
            context_tokens=window.context_tokens,
        )

    offline = streamer(None).decode_offline(all_tokens).cpu().numpy()
    ours = streamer(window.reference_tokens)
    lookahead = ours.lookahead_tokens
    chunks, end = [], 0
    for count in chunk_tokens[:-1]:
        end += count
        chunks.append(ours.decode(all_tokens[: end + lookahead], finalize=False).cpu().numpy())
    chunks.append(ours.decode(all_tokens, finalize=True).cpu().numpy())
    streamed = np.concatenate(chunks)
    our_figures = seam_figures(streamed, offline, join_offsets([c.size for c in chunks]))

    naive = _naive_chunks(model, engine.n_timesteps, tokens, chunk_tokens)
    naive_audio = np.concatenate(naive)
    naive_figures = seam_figures(naive_audio, offline, join_offsets([c.size for c in naive]))
    return our_figures, naive_figures


def _upstream_load_seconds(variant: ModelVariant, ckpt_dir: Path, device: str) -> float:
    """Upstream's own `from_local` for the model, timed (and dropped)."""
    started = time.perf_counter()
    if variant is ModelVariant.TURBO:
        from chatterbox.tts_turbo import ChatterboxTurboTTS

        upstream: Any = ChatterboxTurboTTS.from_local(ckpt_dir, device)
    elif variant is ModelVariant.ORIGINAL:
        from chatterbox.tts import ChatterboxTTS

        upstream = ChatterboxTTS.from_local(ckpt_dir, device)
    else:
        from chatterbox.mtl_tts import ChatterboxMultilingualTTS

        # Upstream's multilingual tokenizer goes online even for a local checkpoint.
        with upstream_offline(ckpt_dir):
            upstream = ChatterboxMultilingualTTS.from_local(ckpt_dir, device)
    seconds = time.perf_counter() - started
    del upstream
    give_memory_back()
    return seconds


def speech_tokens_decoded(model: Any, generated: list[int]) -> list[int]:
    """What the engine decodes for `generated` (one segment): the speech tokens, then the
    silence that upstream Turbo appends (the other models append none)."""
    trailing = TRAILING_SILENCE_TOKENS if model.variant is ModelVariant.TURBO else 0
    return [t for t in generated if t < SPEECH_VOCAB_SIZE] + [SILENCE_TOKEN] * trailing


def measure(
    variant: ModelVariant, ckpt_dir: Path | None, args: argparse.Namespace
) -> dict[str, Any]:
    """One model's figures: loads it, runs it and lets it go (the caller collects it)."""
    ckpt_dir = ckpt_dir or random_checkpoint(variant)
    # Also warms the page cache for our own load.
    upstream_load_s = _upstream_load_seconds(variant, ckpt_dir, args.device)
    dtype = args.dtype or default_dtype(args.device)
    model = load_model(variant, ckpt_dir, args.device, dtype=dtype.torch_dtype)
    engine = StreamingEngine(model, EngineConfig(first_chunk_tokens=args.first_chunk_tokens))
    # Each model with upstream `generate`'s sampling defaults, as the server gives them.
    params = default_params(variant)
    language = args.language if variant is ModelVariant.MULTILINGUAL else DEFAULT_LANGUAGE
    request = SynthesisRequest(
        args.text,
        params,
        chunk_size=args.chunk_size,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        language=language,
    )
    # Warm-up: first calls pay one-off costs (allocator, kernels, Perth's first call).
    warm_up = SynthesisRequest("Warm up.", params, seed=1, max_new_tokens=20, language=language)
    engine.synthesize(warm_up)
    list(engine.stream(warm_up))

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
    chunk_tokens = [round(c.audio.size / SAMPLES_PER_TOKEN) for c in chunks]
    tokens = speech_tokens_decoded(model, summary.speech_tokens)
    chunk_tokens[-1] = len(tokens) - sum(chunk_tokens[:-1])
    window = engine.config.window_for(model.meanflow)
    ours, naive = _seams(model, engine, window, tokens, summary.seed, chunk_tokens)

    regular_total = statistics.median(regular_s)
    stream_total = statistics.median(stream_s)
    ttfa = statistics.median(ttfa_s)
    return {
        "device": args.device,
        "dtype": dtype.value,
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
        "stream_reference_tokens": window.reference_tokens,
        "flow_context_tokens": window.context_tokens,
        "repeats": args.repeats,
    }


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """What both benchmarks take to choose the model, its checkpoint, device and dtype."""
    parser.add_argument(
        "--model",
        type=ModelVariant,
        choices=list(ModelVariant),
        default=ModelVariant.TURBO,
        help="the model to measure; other than turbo, Turbo too, as the baseline",
    )
    parser.add_argument("--ckpt-dir", type=Path, help="--model's checkpoint")
    parser.add_argument("--baseline-ckpt-dir", type=Path, help="Turbo's, as the baseline")
    parser.add_argument("--language", default=DEFAULT_LANGUAGE, help="the multilingual model's")
    add_device_options(parser)


def parse_model_options(
    parser: argparse.ArgumentParser, argv: list[str] | None
) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.language != DEFAULT_LANGUAGE and args.model is not ModelVariant.MULTILINGUAL:
        parser.error("--language is for --model multilingual: the others speak English only")
    return args


def compared_models(model: ModelVariant) -> list[ModelVariant]:
    """Turbo alone, or Turbo first (the baseline) and then `model`."""
    return [ModelVariant.TURBO] if model is ModelVariant.TURBO else [ModelVariant.TURBO, model]


def side_by_side(columns: dict[str, dict[str, Any]]) -> str:
    """One row per figure (in first-seen order), one column per model."""
    rows: dict[str, list[str]] = {}
    for index, figures in enumerate(columns.values()):
        for key, value in figures.items():
            rows.setdefault(key, [""] * len(columns))[index] = str(value)
    table = [["figure", *columns], *([key, *values] for key, values in rows.items())]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def report(columns: dict[str, dict[str, Any]], json_path: Path | None) -> None:
    """Print the figures as an aligned table and, if asked, write them as JSON: one model's
    flat (as gpu_check.sh reads them), several side by side, the first being the baseline."""
    if len(columns) == 1:
        (figures,) = columns.values()
        width = max(len(k) for k in figures)
        for key, value in figures.items():
            print(f"{key:<{width}}  {value}")
        out: dict[str, Any] = figures
    else:
        print(side_by_side(columns))
        baseline, *others = columns
        out = {"baseline": baseline, "model": others[-1], "models": columns}
    if json_path:
        json_path.write_text(json.dumps(out, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    add_model_options(parser)
    parser.add_argument("--text", default=DEFAULT_TEXT)
    parser.add_argument("--max-new-tokens", type=int, default=TOKENS_FOR_10_S)
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--first-chunk-tokens", type=int, default=EngineConfig.first_chunk_tokens)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parse_model_options(parser, argv)

    columns: dict[str, dict[str, Any]] = {}
    for variant in compared_models(args.model):
        ckpt_dir = args.ckpt_dir if variant is args.model else args.baseline_ckpt_dir
        columns[variant.value] = measure(variant, ckpt_dir, args)
        give_memory_back()
    report(columns, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
