"""The one thread that does all of a device's model work, loading included.

Why a single thread, rather than "any thread, one at a time": PyTorch's CPU kernels run on
OpenMP (libgomp), which keeps a team of worker threads for every thread that has run parallel
work. While such threads outnumber the CPU cores, libgomp lets its workers spin for ~1 us
instead of ~3 ms between parallel regions, so they fall asleep between the hundreds of
regions of every model step and each region pays a wake-up. Measured on our 2-core CPU with
the model loaded on one thread and run on another: a T3 step took 48 ms instead of 33 ms, and
the whole single-stream time grew by ~15%. One thread for loading and inference keeps a single
team. On CUDA it changes nothing but is just as correct.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class DeviceThread:
    """Runs submitted work, in order, on one long-lived thread."""

    def __init__(self, name: str = "device"):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def submit(self, work: Callable[[], T]) -> Future[T]:
        return self._executor.submit(work)

    def run(self, work: Callable[[], T]) -> T:
        """`work()` on the device thread; blocks until it is done."""
        return self.submit(work).result()

    async def run_async(self, work: Callable[[], T]) -> T:
        """`work()` on the device thread, awaited without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(work))

    def close(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=True)
