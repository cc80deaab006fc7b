"""A worker's warm-up: one short synthesis through each path it serves, before /health says
ready.

Without it the first request after a start pays one-time costs: lazy initialisation and the
first run of every kernel shape (oneDNN builds its primitives on first use), in T3, S3Gen,
HiFT and the watermarker. On our 2-core CPU with the random Turbo checkpoint the first stream
after a start waited 2.8 s for its first audio against 1.5 s for the next ones (2 s more CPU
work), and 1.57 s with the warm-up, which costs the start about 8 s
(`scripts/bench_first_request.py`). The warm-up goes through the runner the worker serves
with, streaming and regular synthesis both, and is not counted in the request metrics.
"""

from __future__ import annotations

import time
from contextlib import aclosing

from server.engine.runners import EngineRunner
from server.engine.sampling import SamplingParams
from server.engine.schema import MIN_CHUNK_SIZE, SynthesisRequest

WARMUP_TEXT = "Warming up."
WARMUP_SEED = 0
# Past the first chunk: one more chunk of the smallest size and a short last one, so each
# decoding step a real stream takes (first chunk, following chunks, the end) has run once.
WARMUP_TOKENS_AFTER_FIRST_CHUNK = MIN_CHUNK_SIZE + 4


def warmup_request(params: SamplingParams, first_chunk_tokens: int) -> SynthesisRequest:
    return SynthesisRequest(
        WARMUP_TEXT,
        params,
        chunk_size=MIN_CHUNK_SIZE,
        seed=WARMUP_SEED,
        max_new_tokens=first_chunk_tokens + WARMUP_TOKENS_AFTER_FIRST_CHUNK,
    )


async def warm_up(runner: EngineRunner, request: SynthesisRequest) -> float:
    """Stream `request` to its end, then synthesize it whole; the seconds that took."""
    started = time.perf_counter()
    async with aclosing(runner.stream(request)) as chunks:
        async for _ in chunks:
            pass
    await runner.synthesize(request)
    return time.perf_counter() - started
