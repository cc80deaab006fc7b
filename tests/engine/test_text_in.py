"""Text-in streams: text pushed while the stream runs, on the real engine (random weights)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from server.engine.device_thread import DeviceThread
from server.engine.engine import AudioChunk, EngineConfig, StreamingEngine, SynthesisRequest
from server.engine.loading import LoadedModel
from server.engine.runners import BatchedRunner
from server.engine.sampling import TURBO_DEFAULTS
from server.engine.schema import TRAILING_SILENCE_TOKENS, Cancelled
from server.engine.stream_state import PAUSE_COVER_TOKENS
from server.engine.text_feed import TextFeed
from server.engine.types import Audio
from tests.conftest import device_atol

pytestmark = pytest.mark.model
SAMPLES_PER_TOKEN = 960
FIRST, SECOND = "Hello there. ", "How are you today? "
# With the engine below, the first sentence's token cap: all of its speech is heard while the
# stream waits; only the pause's silence is held back (the decoder's lookahead and tail).
FIRST_PART_SAMPLES = (int(len(FIRST.strip()) * 0.5) + 2) * SAMPLES_PER_TOKEN


@pytest.fixture(scope="module")
def engine(turbo_model: LoadedModel) -> StreamingEngine:
    # Short segments (random weights never stop by themselves): ~10 tokens a sentence.
    config = EngineConfig(
        watermark=False, first_chunk_tokens=6, cap_tokens_per_char=0.5, cap_token_margin=2
    )
    return StreamingEngine(turbo_model, config)


@pytest.fixture
def runner(engine: StreamingEngine) -> Iterator[BatchedRunner]:
    device = DeviceThread()
    runner = BatchedRunner(engine, max_batch=4, device=device)
    yield runner
    runner.close()
    device.close()


def _fed(feed: TextFeed, seed: int = 4) -> SynthesisRequest:
    return SynthesisRequest("", TURBO_DEFAULTS, chunk_size=10, seed=seed, text_feed=feed)


def _audio(chunks: list[AudioChunk]) -> Audio:
    return np.concatenate([c.audio for c in chunks])


def _whole_feed(text: str) -> TextFeed:
    feed = TextFeed()
    feed.push(text, flush=True)
    feed.end()
    return feed


def test_text_pushed_whole_equals_the_text_sent_at_once_serial(engine: StreamingEngine) -> None:
    text = FIRST + SECOND
    plain = list(engine.stream(SynthesisRequest(text, TURBO_DEFAULTS, chunk_size=10, seed=4)))
    fed = list(engine.stream(_fed(_whole_feed(text))))
    assert fed[-1].summary is not None and plain[-1].summary is not None
    assert fed[-1].summary.speech_tokens == plain[-1].summary.speech_tokens
    assert [c.audio.size for c in fed] == [c.audio.size for c in plain]
    np.testing.assert_allclose(_audio(fed), _audio(plain), atol=device_atol(1e-5, _audio(plain)))


def test_text_pushed_whole_equals_the_text_sent_at_once_batched(
    engine: StreamingEngine, runner: BatchedRunner
) -> None:
    text = FIRST + SECOND

    async def both() -> tuple[list[AudioChunk], list[AudioChunk]]:
        plain = SynthesisRequest(text, TURBO_DEFAULTS, chunk_size=10, seed=4)
        return (
            [c async for c in runner.stream(plain)],
            [c async for c in runner.stream(_fed(_whole_feed(text)))],
        )

    plain, fed = asyncio.run(both())
    assert fed[-1].summary is not None and plain[-1].summary is not None
    assert fed[-1].summary.speech_tokens == plain[-1].summary.speech_tokens
    np.testing.assert_allclose(_audio(fed), _audio(plain), atol=device_atol(1e-5, _audio(plain)))


def _expected_samples(summary_tokens: int, pauses: int) -> int:
    pause = TRAILING_SILENCE_TOKENS + PAUSE_COVER_TOKENS
    return (summary_tokens + pauses * pause + TRAILING_SILENCE_TOKENS) * SAMPLES_PER_TOKEN


def test_a_sentence_is_heard_whole_while_the_next_is_awaited_batched(
    runner: BatchedRunner,
) -> None:
    feed = TextFeed()
    feed.push(FIRST)

    async def scenario() -> tuple[list[AudioChunk], list[AudioChunk]]:
        arrived: asyncio.Queue[AudioChunk | None] = asyncio.Queue()

        async def pump() -> None:  # a timed-out read must not cancel the stream itself
            async for chunk in runner.stream(_fed(feed)):
                arrived.put_nowait(chunk)
            arrived.put_nowait(None)

        pumping = asyncio.create_task(pump())
        before: list[AudioChunk] = []
        # All of the first sentence's speech arrives while the second is still unknown...
        while sum(c.audio.size for c in before) < FIRST_PART_SAMPLES:
            chunk = await asyncio.wait_for(arrived.get(), timeout=60)
            assert chunk is not None
            before.append(chunk)
        # ...and then nothing more until text comes.
        await asyncio.sleep(1.0)
        assert arrived.empty()
        feed.push(SECOND)
        feed.end()
        await pumping
        after = []
        while (chunk := arrived.get_nowait()) is not None:
            after.append(chunk)
        return before, after

    before, after = asyncio.run(scenario())
    summary = after[-1].summary
    assert summary is not None and summary.segments == 2
    assert _audio(before).size == FIRST_PART_SAMPLES
    # Each sentence's audio start is reported where it falls: at 0, and after the first
    # sentence and its pause's silence.
    starts = [s for c in before + after for s in c.segment_starts]
    pause = TRAILING_SILENCE_TOKENS + PAUSE_COVER_TOKENS
    assert starts == [0, FIRST_PART_SAMPLES + pause * SAMPLES_PER_TOKEN]
    assert _audio(before + after).size == _expected_samples(len(summary.speech_tokens), 1)
    assert [c.chunk_id for c in before + after] == list(range(1, len(before + after) + 1))


def test_a_serial_stream_sends_a_sentence_whole_then_waits_for_text(
    engine: StreamingEngine,
) -> None:
    feed = TextFeed()
    feed.push(FIRST)
    chunks: list[AudioChunk] = []
    for chunk in engine.stream(_fed(feed)):
        chunks.append(chunk)
        if len(chunks) == 1:
            # The engine has no more text: its first chunk is the whole first sentence.
            assert chunk.audio.size == FIRST_PART_SAMPLES
            feed.push(SECOND)
            feed.end()
    summary = chunks[-1].summary
    assert summary is not None and summary.segments == 2
    assert _audio(chunks).size == _expected_samples(len(summary.speech_tokens), 1)


def test_a_serial_stream_waiting_for_text_is_cancelled(engine: StreamingEngine) -> None:
    feed = TextFeed()
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.perf_counter()
    with pytest.raises(Cancelled):
        list(engine.stream(_fed(feed), cancel))
    assert time.perf_counter() - started < 2.0


def test_cancelling_a_stream_that_waits_for_text_frees_its_slot(runner: BatchedRunner) -> None:
    feed = TextFeed()  # never gets any text

    async def scenario() -> float:
        consumer = asyncio.create_task(_drain(runner.stream(_fed(feed))))
        await asyncio.sleep(0.5)
        assert runner.busy  # the stream holds its place while it waits
        started = time.perf_counter()
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        return time.perf_counter() - started

    assert asyncio.run(scenario()) < 2.0
    assert not runner.busy


async def _drain(stream: object) -> None:
    async for _ in stream:  # type: ignore[attr-defined]
        pass


def test_a_text_stream_waiting_does_not_hold_back_a_stream_beside_it(
    engine: StreamingEngine, runner: BatchedRunner
) -> None:
    feed = TextFeed()

    async def scenario() -> list[AudioChunk]:
        waiting = asyncio.create_task(_drain(runner.stream(_fed(feed, seed=7))))
        other = SynthesisRequest(FIRST, TURBO_DEFAULTS, chunk_size=10, seed=8)
        chunks = [c async for c in runner.stream(other)]
        feed.end()
        await waiting
        return chunks

    chunks = asyncio.run(scenario())
    summary = chunks[-1].summary
    assert summary is not None
    alone = SynthesisRequest(FIRST, TURBO_DEFAULTS, chunk_size=10, seed=8)
    assert summary.speech_tokens == engine.speech_tokens(alone)
