"""Segments generated ahead of their turn in rows the batch does not need (real engine)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator

import numpy as np
import pytest

from server.engine.device_thread import DeviceThread
from server.engine.engine import AudioChunk, EngineConfig, StreamingEngine, SynthesisRequest
from server.engine.loading import LoadedModel
from server.engine.runners import BatchedRunner
from server.engine.sampling import TURBO_DEFAULTS
from server.engine.schema import FlowWindow
from server.engine.stream_state import segment_seed
from server.engine.text_feed import TextFeed

pytestmark = pytest.mark.model
SENTENCES = (
    "The first sentence is heard first. ",
    "A second one follows it closely. ",
    "Then a third one comes along. ",
    "And the fourth one ends it all. ",
)


@pytest.fixture(scope="module")
def engine(turbo_model: LoadedModel) -> StreamingEngine:
    # One segment per sentence, ~20 tokens each (random weights never stop by themselves); a
    # short flow prompt, as the chunks are short (the flow's cost is mostly its prompt's).
    config = EngineConfig(
        watermark=False,
        first_chunk_tokens=6,
        max_segment_chars=40,
        cap_tokens_per_char=0.5,
        cap_token_margin=2,
        flow_window=FlowWindow(reference_tokens=20, context_tokens=20),
    )
    return StreamingEngine(turbo_model, config)


def _runner(engine: StreamingEngine, max_batch: int) -> Iterator[BatchedRunner]:
    device = DeviceThread()
    runner = BatchedRunner(engine, max_batch=max_batch, device=device)
    yield runner
    runner.close()
    device.close()


@pytest.fixture
def runner(engine: StreamingEngine) -> Iterator[BatchedRunner]:
    yield from _runner(engine, 4)


@pytest.fixture
def pair_runner(engine: StreamingEngine) -> Iterator[BatchedRunner]:
    yield from _runner(engine, 2)


def _request(seed: int, text: str = "".join(SENTENCES)) -> SynthesisRequest:
    return SynthesisRequest(text, TURBO_DEFAULTS, chunk_size=10, seed=seed)


async def _collect(stream: AsyncGenerator[AudioChunk, None]) -> list[AudioChunk]:
    return [chunk async for chunk in stream]


def _check_serial_equal(
    engine: StreamingEngine, request: SynthesisRequest, chunks: list[AudioChunk]
) -> None:
    """The tokens and audio of `request` generated alone, each segment in its turn."""
    serial = list(engine.stream(request))
    assert serial[-1].summary is not None and chunks[-1].summary is not None
    assert chunks[-1].summary.speech_tokens == serial[-1].summary.speech_tokens
    assert [c.chunk_id for c in chunks] == list(range(1, len(chunks) + 1))
    audio = np.concatenate([c.audio for c in chunks])
    alone = np.concatenate([c.audio for c in serial])
    assert audio.size == alone.size
    # Chunks end at other tokens (a segment's tokens arrive at once) and a chunk's flow call
    # sees a bounded context, so samples differ as between two chunk sizes: chunk_size 10
    # against 25 on this text differ by 0.11 (RMS of the difference over RMS); tokens out of
    # place (a segment early, silence misplaced) would differ by ~1.4.
    difference = float(np.sqrt(np.mean((audio - alone) ** 2)) / np.sqrt(np.mean(alone**2)))
    assert difference < 0.25, difference


def test_segment_seeds_keep_the_request_seed_first_and_differ_after() -> None:
    assert segment_seed(7, 0) == 7
    seeds = {segment_seed(7, i) for i in range(100)} | {segment_seed(8, i) for i in range(100)}
    assert len(seeds) == 200 and all(0 <= s < 2**63 for s in seeds)


def test_a_long_text_generates_its_next_segments_early_with_the_same_tokens(
    engine: StreamingEngine, runner: BatchedRunner
) -> None:
    chunks = asyncio.run(_collect(runner.stream(_request(3))))
    summary = chunks[-1].summary
    assert summary is not None and summary.segments == len(SENTENCES)
    assert runner.device_time.segments_ahead >= 2
    _check_serial_equal(engine, _request(3), chunks)
    assert runner.batch_rows == 0 and not runner.busy


def test_sentences_arriving_while_one_is_generated_start_at_once(
    engine: StreamingEngine, runner: BatchedRunner
) -> None:
    feed = TextFeed()
    feed.push(SENTENCES[0])

    async def scenario() -> list[AudioChunk]:
        stream = runner.stream(SynthesisRequest("", TURBO_DEFAULTS, 10, seed=5, text_feed=feed))
        chunks = [await stream.__anext__()]
        for sentence in SENTENCES[1:]:  # as a language model would, faster than speech
            feed.push(sentence)
        feed.end()
        return chunks + await _collect(stream)

    chunks = asyncio.run(scenario())
    assert runner.device_time.segments_ahead >= 2
    whole = TextFeed()
    for sentence in SENTENCES:
        whole.push(sentence)
    whole.end()
    _check_serial_equal(
        engine, SynthesisRequest("", TURBO_DEFAULTS, 10, seed=5, text_feed=whole), chunks
    )


def test_a_new_request_takes_back_rows_lent_to_segments_ahead(
    engine: StreamingEngine, pair_runner: BatchedRunner
) -> None:
    async def scenario() -> tuple[list[AudioChunk], list[AudioChunk]]:
        first = asyncio.create_task(_collect(pair_runner.stream(_request(6))))
        while pair_runner.batch_rows < 2:  # the second row is lent to a segment ahead
            await asyncio.sleep(0.005)
        late = await _collect(pair_runner.stream(_request(8, SENTENCES[0])))
        return await first, late

    first, late = asyncio.run(scenario())
    assert pair_runner.device_time.segments_set_aside >= 1
    _check_serial_equal(engine, _request(6), first)
    _check_serial_equal(engine, _request(8, SENTENCES[0]), late)
    assert pair_runner.batch_rows == 0


def test_cancelling_a_stream_frees_the_rows_of_its_segments_ahead(runner: BatchedRunner) -> None:
    async def scenario() -> int:
        stream = runner.stream(_request(9))
        await stream.__anext__()
        while runner.device_time.segments_ahead == 0:
            await stream.__anext__()
        rows = runner.batch_rows
        await stream.aclose()
        return rows

    assert asyncio.run(scenario()) >= 2
    assert runner.batch_rows == 0 and not runner.busy
