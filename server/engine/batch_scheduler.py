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

Emit = Callable[[object], None]  # receives AudioChunk / SynthesisResult / BaseException / DONE
DONE = object()


@dataclass
class _Job:
    request: SynthesisRequest
    streaming: bool
    emit: Emit
    cancel: threading.Event
    key: int
    state: BatchStream | None = None
    plan: SegmentPlan | None = None
    segment_tokens: int = 0
    t3_done: bool = False
    needs_text: bool = False  # a text-in stream with no complete segment yet


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
        assert job.state is not None
        job.plan = job.state.next_segment()
        job.segment_tokens = 0
        if job.plan is None:
            job.needs_text = job.state.waiting_for_text()
            job.t3_done = not job.needs_text
            return
        with self.device_time.timing("prefill"):
            first = self._batch.add(
                job.key,
                job.plan.t3_cond,
                job.plan.text_tokens,
                job.request.params,
                job.state.generator,
                job.plan.cond_key,
            )
        self._take_token(job, first)

    def _resume_text_streams(self) -> None:
        """Text-in streams whose next segment may have arrived start generating it."""
        for job in [j for j in self._active.values() if j.needs_text]:
            job.needs_text = False
            try:
                self._next_segment(job)
            except Exception as exc:  # e.g. the segment's prefill
                self._fail(job, exc)

    def _step(self) -> None:
        try:
            with self.device_time.timing("decode"):
                tokens = self._batch.step()
            self.device_time.decode_steps += 1
            self.device_time.decoded_tokens += len(tokens)
        except Exception as exc:  # a failed forward spoils every row
            for key in list(self._batch.keys):
                self._batch.remove(key)
                self._fail(self._active[key], exc)
            return
        for key, token in tokens.items():
            job = self._active.get(key)
            if job is not None:
                try:
                    self._take_token(job, token)
                except Exception as exc:  # e.g. the next segment's prefill
                    self._fail(job, exc)

    def _take_token(self, job: _Job, token: int) -> None:
        assert job.state is not None and job.plan is not None
        if token >= 0 and token != self._stop_token:
            job.state.accept(token)
            job.segment_tokens += 1
            if job.segment_tokens < job.plan.cap:
                return
        # The segment ended (stop token, cap, or nothing left to sample from).
        self._batch.remove(job.key)
        self._next_segment(job)

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
                member.emit(chunk)
            return job.t3_done
        if not job.streaming:
            job.emit(job.state.whole())
            return True
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
        self._active.pop(job.key, None)
        if job.key in self._batch.keys:
            self._batch.remove(job.key)
        job.emit(DONE)

    def _fail(self, job: _Job, exc: BaseException) -> None:
        self._active.pop(job.key, None)
        if job.key in self._batch.keys:
            self._batch.remove(job.key)
        if not isinstance(exc, Cancelled):
            logger.exception("stream failed", exc_info=exc)
        job.emit(exc)
        job.emit(DONE)


def _run_call(call: _Call) -> None:
    try:
        call.emit(call.work())
    except BaseException as exc:
        call.emit(exc)


__all__ = ["DONE", "AudioChunk", "BatchScheduler", "DeviceTime", "SynthesisResult"]
