"""Which due streams share a flow call (the scheduler's grouping rule, without a model)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

from server.engine.batch_scheduler import MAX_SHARED_FLOW_STREAMS, BatchScheduler, _Job
from server.engine.device_thread import DeviceThread
from server.engine.engine import SynthesisRequest


@dataclass
class FakeState:
    pending: int
    hop_tokens: int = 10
    prompt: int = 150
    last: int = 0

    def prompt_tokens(self) -> int:
        return self.prompt

    def pending_tokens(self) -> int:
        return self.pending

    def hop(self) -> int:
        return self.hop_tokens

    def last_chunk_tokens(self) -> int:
        return self.last


def _scheduler(shares: bool = True) -> BatchScheduler:
    engine = SimpleNamespace(stop_token=0, shares_flow_calls=shares, new_token_batch=lambda: None)
    return BatchScheduler(cast(Any, engine), 8, DeviceThread())


def _job(key: int, state: FakeState, streaming: bool = True, t3_done: bool = False) -> _Job:
    job = _Job(SynthesisRequest("x"), streaming, lambda _: None, threading.Event(), key)
    job.state, job.t3_done = cast(Any, state), t3_done
    return job


def _keys(jobs: list[_Job]) -> list[int]:
    return [job.key for job in jobs]


def test_streams_join_when_the_first_streams_tokens_make_a_chunk_for_them() -> None:
    first = _job(0, FakeState(pending=12))
    others = [
        _job(1, FakeState(pending=12)),  # the same
        _job(2, FakeState(pending=15)),  # more pending: takes 12 now, the rest later
        _job(3, FakeState(pending=11)),  # fewer than 12: cannot
        _job(4, FakeState(pending=12, hop_tokens=20)),  # 12 is not a full chunk for it
        _job(5, FakeState(pending=12, prompt=140)),  # another prompt length
        _job(6, FakeState(pending=12), streaming=False),  # regular synthesis
        _job(7, FakeState(pending=12), t3_done=True),  # its last chunk
    ]
    assert _keys(_scheduler()._chunk_group(first, others)) == [0, 1, 2]


def test_last_chunks_join_only_with_the_same_number_of_tokens() -> None:
    first = _job(0, FakeState(pending=0, last=40), t3_done=True)
    others = [
        _job(1, FakeState(pending=0, last=40), t3_done=True),
        _job(2, FakeState(pending=0, last=41), t3_done=True),
        _job(3, FakeState(pending=40)),
    ]
    assert _keys(_scheduler()._chunk_group(first, others)) == [0, 1]
    nothing_left = _job(4, FakeState(pending=0, last=0), t3_done=True)
    assert _keys(_scheduler()._chunk_group(nothing_left, [nothing_left])) == [4]


def test_at_most_a_few_streams_share_and_only_when_the_engine_can() -> None:
    jobs = [_job(key, FakeState(pending=12)) for key in range(8)]
    group = _scheduler()._chunk_group(jobs[0], jobs[1:])
    assert _keys(group) == list(range(MAX_SHARED_FLOW_STREAMS))
    assert _keys(_scheduler(shares=False)._chunk_group(jobs[0], jobs[1:])) == [0]
