"""Serves every stream of one device on its device thread, all T3 decoding batched.

The scheduler's loop runs on the `DeviceThread` while there are streams and hands the thread
back when none are left (other model work for the device, queued behind it, runs on the same
thread). Each loop iteration: run queued one-off model work (voice prompts), admit waiting
streams up to `max_batch` (each prefilled on its own), advance every admitted stream by one
token in a single batched T3 forward, then do at most one piece of token-to-wave work, for the
stream whose listener has the least audio buffered, so no stream starves and first chunks come
early. Other streams whose chunks are due and have the same shape join that stream's flow call
(one batched call, Turbo only): streams that start together get their first chunks together.
A stream that is cancelled leaves the batch at the next step; the others carry on.

Rows the batch does not need are lent to segments ahead of their turn: a stream whose next
sentence is already complete (long text, or a language model's text arriving faster than
speech) generates it beside the current one, its tokens waiting until the segment before
ends. Each segment samples from its own generator, so its tokens are the same whenever it is
generated; a row lent this way is taken back (its work redone later) when a request needs it.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from server.engine.batching import BatchStream, SegmentPlan
from server.engine.device_thread import DeviceThread
from server.engine.engine import SpeechEngine
from server.engine.schema import AudioChunk, Cancelled, SynthesisRequest, SynthesisResult

logger = logging.getLogger(__name__)

# At most this many streams share a flow call. On our CPU a shared call costs 1.32x less per
# stream for 2 streams and 1.43x for 4, and every stream in it waits for the whole call: larger
# groups would delay the most urgent listener for little gain.
MAX_SHARED_FLOW_STREAMS = 4

# How long the loop sleeps while every stream waits for text, at most (seconds).
TEXT_WAIT_SECONDS = 0.05

# At most this many segments of one stream are generated ahead of their turn. Each is a
# batch row, and every row makes each step slower on a CPU (less so on a GPU): a few keep the
# next sentences ready without slowing the one being heard much.
MAX_SEGMENTS_AHEAD = 2

Emit = Callable[[object], None]  # receives AudioChunk / SynthesisResult / BaseException / DONE
DONE = object()


@dataclass
class _Segment:
    """A segment T3 is generating for a stream: its current one, or one ahead of its turn."""

    plan: SegmentPlan
    key: Hashable  # its row in the token batch
    generated: int = 0
    waiting_tokens: list[int] = field(default_factory=list)  # ahead of its turn: kept here
    ended: bool = False  # stop token or cap


@dataclass
class _Job:
    request: SynthesisRequest
    streaming: bool
    emit: Emit
    cancel: threading.Event
    key: int
    state: BatchStream | None = None
    segment: _Segment | None = None  # the one being heard next
    ahead: list[_Segment] = field(default_factory=list)  # the ones after it, in order
    t3_done: bool = False
    needs_text: bool = False  # a text-in stream with no complete segment yet
    chunks_sent: int = 0

    def segments(self) -> list[_Segment]:
        return ([self.segment] if self.segment is not None else []) + self.ahead


@dataclass
class _Call:
    work: Callable[[], Any]
    emit: Emit


@dataclass
class DeviceTime:
    """Where the device's thread spent its time (seconds), for benchmarks and diagnostics."""

    prefill_s: float = 0.0  # T3 over new streams' prompts
    decode_s: float = 0.0  # batched T3 steps
    vocode_s: float = 0.0  # S3Gen + HiFT (token-to-wave)
    decode_steps: int = 0
    decoded_tokens: int = 0  # summed over the streams of each step
    shared_flow_calls: int = 0  # flow calls that made several streams' chunks
    shared_flow_chunks: int = 0  # the chunks they made
    segments_ahead: int = 0  # segments started before their turn
    segments_set_aside: int = 0  # of those, rows taken back for a new request

    @contextmanager
    def timing(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            name = f"{phase}_s"
            setattr(self, name, getattr(self, name) + time.perf_counter() - started)


@dataclass
class BatchScheduler:
    engine: SpeechEngine
    max_batch: int
    device: DeviceThread
    share_flow: bool = True  # due chunks of equal shape share one flow call
    _inbox: queue.Queue[_Job | _Call | None] = field(default_factory=queue.Queue)
    _waiting: list[_Job] = field(default_factory=list)
    _active: dict[Hashable, _Job] = field(default_factory=dict)
    _rows: dict[Hashable, _Job] = field(default_factory=dict)  # batch row key -> its stream
    _keys: itertools.count[int] = field(default_factory=itertools.count)
    device_time: DeviceTime = field(default_factory=DeviceTime)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _running: bool = False  # the loop is on the device thread, or queued there
    # Set by anything that gives the loop work (new requests, text for a waiting stream):
    # the loop sleeps on it while every stream waits for text.
    _wakeup: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._batch = self.engine.new_token_batch()
        self._stop_token = self.engine.stop_token

    @property
    def active(self) -> int:
        return len(self._active)

    @property
    def rows(self) -> int:
        """Rows of the token batch in use (current segments and segments ahead)."""
        return len(self._rows)

    def submit(
        self, request: SynthesisRequest, emit: Emit, cancel: threading.Event, streaming: bool
    ) -> None:
        self._inbox.put(_Job(request, streaming, emit, cancel, next(self._keys)))
        self._wake()

    def call(self, work: Callable[[], Any], emit: Emit) -> None:
        self._inbox.put(_Call(work, emit))
        self._wake()

    def close(self) -> None:
        """Stop serving; the device thread's owner closes the thread."""
        self._inbox.put(None)
        self._wake()

    def _wake(self) -> None:
        self._wakeup.set()
        with self._lock:
            if self._running:
                return
            self._running = True
        self.device.submit(self._loop)

    def _idle(self) -> bool:
        """True (and the loop marked stopped) when there is nothing at all to do."""
        if self._active or self._waiting:
            return False
        with self._lock:
            # Anything put in the inbox after this check finds `_running` False and wakes
            # a new loop.
            if self._inbox.empty():
                self._running = False
                return True
        return False

    def _loop(self) -> None:
        while self._take_inbox() and not self._idle():
            try:
                self._drop_cancelled()
                self._admit()
                self._resume_text_streams()
                self._start_segments_ahead()
                if len(self._batch):
                    self._step()
                if not self._vocode_one() and not len(self._batch):
                    # Every stream waits for text: sleep until some arrives (or a new
                    # request); the timeout bounds how late a cancellation is noticed.
                    self._wakeup.wait(TEXT_WAIT_SECONDS)
                    self._wakeup.clear()
            except Exception as exc:  # never let one bad stream stop the device's thread
                logger.exception("scheduler iteration failed")
                for job in [*self._waiting, *self._active.values()]:
                    self._fail(job, exc)
                self._waiting.clear()

    def _take_inbox(self) -> bool:
        """Move new work in; False once closed."""
        try:
            item = self._inbox.get_nowait()
        except queue.Empty:
            return True
        while True:
            if item is None:
                return False
            if isinstance(item, _Call):
                _run_call(item)
            else:
                self._waiting.append(item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return True

    def _admit(self) -> None:
        while self._waiting and len(self._active) < self.max_batch:
            job = self._waiting.pop(0)
            try:
                job.state = self.engine.start(job.request, streaming=job.streaming)
                if job.request.text_feed is not None:
                    job.request.text_feed.listen(self._wakeup.set)
                self._active[job.key] = job
                self._next_segment(job)
            except Exception as exc:
                self._fail(job, exc)

    def _next_segment(self, job: _Job) -> None:
        """Move `job` on to its next segment: one generated ahead of its turn takes over
        (its tokens are the stream's now), otherwise a new row is prefilled."""
        assert job.state is not None
        while True:
            plan = job.state.next_segment()
            if plan is None:
                job.segment = None
                job.needs_text = job.state.waiting_for_text()
                job.t3_done = not job.needs_text
                return
            if job.ahead and job.ahead[0].plan.index == plan.index:
                job.segment = job.ahead.pop(0)
                for token in job.segment.waiting_tokens:
                    job.state.accept(token)
                job.segment.waiting_tokens = []
                if job.segment.ended:
                    continue
                return
            for segment in job.ahead:  # never expected: plans out of order
                self._remove_row(segment.key)
            job.ahead = []
            self._prefill(job, plan)
            return

    def _prefill(self, job: _Job, plan: SegmentPlan, *, ahead: bool = False) -> None:
        """A new batch row for `plan`: `job`'s current segment, or the next one `ahead` of
        its turn; its first token is taken at once."""
        assert job.state is not None
        if not ahead:
            self._take_back_rows(1)
        segment = _Segment(plan, (job.key, plan.index))
        with self.device_time.timing("prefill"):
            first = self._batch.add(
                segment.key,
                plan.t3_cond,
                plan.text_tokens,
                job.request.params,
                plan.new_generator(),
                plan.cond_key,
            )
        self._rows[segment.key] = job
        if ahead:
            job.ahead.append(segment)
        else:
            job.segment = segment
        self._take_token(job, segment, first)

    def _resume_text_streams(self) -> None:
        """Text-in streams whose next segment may have arrived start generating it."""
        for job in [j for j in self._active.values() if j.needs_text]:
            job.needs_text = False
            try:
                self._next_segment(job)
            except Exception as exc:  # e.g. the segment's prefill
                self._fail(job, exc)

    def _start_segments_ahead(self) -> None:
        """Lend rows the batch does not need to segments ahead of their turn: only while no
        request waits, and not before every stream has its first audio (work that can wait
        must not delay a listener)."""
        if self._waiting or any(
            j.streaming and j.chunks_sent == 0 and j.segment is not None
            for j in self._active.values()
        ):
            return
        for job in list(self._active.values()):
            while (
                job.state is not None
                and job.segment is not None
                and len(job.ahead) < MAX_SEGMENTS_AHEAD
                and len(self._batch) < self.max_batch
            ):
                plan = job.state.upcoming_segment(len(job.ahead) + 1)
                if plan is None:
                    break
                try:
                    self._prefill(job, plan, ahead=True)
                except Exception as exc:
                    self._fail(job, exc)
                    break
                self.device_time.segments_ahead += 1

    def _take_back_rows(self, needed: int) -> None:
        """Free rows lent to segments ahead of their turn until `needed` are free: the last
        segment ahead goes first (its work is redone when its turn comes)."""
        while len(self._batch) + needed > self.max_batch:
            lent = [j for j in self._active.values() if j.ahead]
            if not lent:
                return
            job = max(lent, key=lambda j: len(j.ahead))
            self._remove_row(job.ahead.pop().key)
            self.device_time.segments_set_aside += 1

    def _step(self) -> None:
        try:
            with self.device_time.timing("decode"):
                tokens = self._batch.step()
            self.device_time.decode_steps += 1
            self.device_time.decoded_tokens += len(tokens)
        except Exception as exc:  # a failed forward spoils every row
            for failed in {id(j): j for j in self._rows.values()}.values():
                self._fail(failed, exc)
            return
        for key, token in tokens.items():
            job = self._rows.get(key)
            # Its row may have gone during this loop (the stream failed, or moved on).
            segment = next((s for s in job.segments() if s.key == key), None) if job else None
            if job is None or segment is None:
                continue
            try:
                self._take_token(job, segment, token)
            except Exception as exc:  # e.g. the next segment's prefill
                self._fail(job, exc)

    def _take_token(self, job: _Job, segment: _Segment, token: int) -> None:
        assert job.state is not None
        if token >= 0 and token != self._stop_token:
            if segment is job.segment:
                job.state.accept(token)
            else:
                segment.waiting_tokens.append(token)
            segment.generated += 1
            if segment.generated < segment.plan.cap:
                return
        # The segment ended (stop token, cap, or nothing left to sample from).
        segment.ended = True
        self._remove_row(segment.key)
        if segment is job.segment:
            self._next_segment(job)

    def _remove_row(self, key: Hashable) -> None:
        if self._rows.pop(key, None) is not None:
            self._batch.remove(key)

    def _vocode_one(self) -> bool:
        """At most one piece of token-to-wave work; False if there was none."""
        due = [
            job
            for job in self._active.values()
            if job.state is not None and (job.t3_done or (job.streaming and job.state.chunk_due()))
        ]
        if not due:
            return False
        due.sort(key=lambda j: j.state.buffered_seconds() if j.state else 0.0)
        group = self._chunk_group(due[0], due[1:])
        try:
            with self.device_time.timing("vocode"):
                finished = self._emit_audio(group)
        except Exception as exc:
            for job in group:
                self._fail(job, exc)
            return True
        # Only now, so the time of the last chunk is on the books when its consumer ends.
        if finished:
            for job in group:
                self._finish(job)
        return True

    def _chunk_group(self, job: _Job, others: list[_Job]) -> list[_Job]:
        """`job` and the other due streams whose chunk can share its flow call: the same
        prompt length, and `job`'s tokens make a full chunk for them too (last chunks: the
        same number of tokens)."""
        state = job.state
        if not (self.share_flow and self.engine.shares_flow_calls and job.streaming and state):
            return [job]
        prompt = state.prompt_tokens()
        if job.t3_done:
            count = state.last_chunk_tokens()

            def fits(other: BatchStream) -> bool:
                return other.last_chunk_tokens() == count
        else:
            count = state.pending_tokens()

            def fits(other: BatchStream) -> bool:
                return other.hop() <= count <= other.pending_tokens()

        group = [job]
        for other in others:
            if len(group) == MAX_SHARED_FLOW_STREAMS or count == 0:
                break
            if (
                other.streaming
                and other.t3_done == job.t3_done
                and other.state is not None
                and other.state.prompt_tokens() == prompt
                and fits(other.state)
            ):
                group.append(other)
        return group

    def _emit_audio(self, group: list[_Job]) -> bool:
        """The next audio of `group` (one job, or streams sharing a flow call); True when
        that was all of it."""
        job = group[0]
        assert job.state is not None
        if len(group) > 1:
            states = [j.state for j in group if j.state is not None]
            if job.t3_done:
                chunks = self.engine.last_chunks_together(states)
            else:
                chunks = self.engine.next_chunks_together(states, job.state.pending_tokens())
            self.device_time.shared_flow_calls += 1
            self.device_time.shared_flow_chunks += len(group)
            for member, chunk in zip(group, chunks, strict=True):
                member.chunks_sent += 1
                member.emit(chunk)
            return job.t3_done
        if not job.streaming:
            job.emit(job.state.whole())
            return True
        job.chunks_sent += 1
        if job.t3_done:
            job.emit(job.state.last_chunk())
            return True
        job.emit(job.state.next_chunk())
        return False

    def _drop_cancelled(self) -> None:
        for job in [j for j in self._waiting if j.cancel.is_set()]:
            self._waiting.remove(job)
            self._fail(job, Cancelled())
        for job in [j for j in self._active.values() if j.cancel.is_set()]:
            self._fail(job, Cancelled())

    def _finish(self, job: _Job) -> None:
        self._leave(job)
        job.emit(DONE)

    def _fail(self, job: _Job, exc: BaseException) -> None:
        self._leave(job)
        if not isinstance(exc, Cancelled):
            logger.exception("stream failed", exc_info=exc)
        job.emit(exc)
        job.emit(DONE)

    def _leave(self, job: _Job) -> None:
        self._active.pop(job.key, None)
        for segment in job.segments():
            self._remove_row(segment.key)
        job.segment, job.ahead = None, []


def _run_call(call: _Call) -> None:
    try:
        call.emit(call.work())
    except BaseException as exc:
        call.emit(exc)


__all__ = ["DONE", "AudioChunk", "BatchScheduler", "DeviceTime", "SynthesisResult"]
