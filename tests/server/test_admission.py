"""Admission control: bounded running and waiting, every place released exactly once."""

from __future__ import annotations

import asyncio
import random

import pytest

from server.admission import Admission
from server.errors import Overloaded


def test_reserve_refuses_when_running_and_queue_are_full() -> None:
    async def scenario() -> None:
        admission = Admission(max_active=1, max_queue=1)
        first, second = admission.reserve(), admission.reserve()
        with pytest.raises(Overloaded):
            admission.reserve()
        async with first.running():
            assert (admission.active, admission.queued) == (1, 1)
        second.release()  # gave up while queued
        assert (admission.active, admission.queued) == (0, 0)

    asyncio.run(scenario())


def test_release_is_idempotent_in_every_state() -> None:
    async def scenario() -> None:
        admission = Admission(max_active=1, max_queue=2)
        ticket = admission.reserve()
        ticket.release()
        ticket.release()
        assert admission.queued == 0
        ticket = admission.reserve()
        async with ticket.running():
            ticket.release()
            ticket.release()
        assert (admission.active, admission.queued) == (0, 0)
        async with admission.reserve().running():  # the slot came back
            pass

    asyncio.run(scenario())


def test_counts_return_to_zero_under_churn_and_cancellation() -> None:
    async def scenario() -> None:
        admission = Admission(max_active=2, max_queue=5)
        peak = 0

        async def client(index: int) -> None:
            nonlocal peak
            try:
                ticket = admission.reserve()
            except Overloaded:
                return
            async with ticket.running():
                peak = max(peak, admission.active)
                await asyncio.sleep(random.random() / 100)

        rng = random.Random(1)
        tasks = [asyncio.create_task(client(i)) for i in range(60)]
        await asyncio.sleep(0.01)
        for task in rng.sample(tasks, 20):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert peak <= 2
        assert (admission.active, admission.queued) == (0, 0)

    asyncio.run(scenario())
