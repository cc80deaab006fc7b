"""Runners put an engine behind asyncio (`base.py` says what they promise)."""

from __future__ import annotations

from server.engine.device_thread import DeviceThread
from server.engine.engine import SpeechEngine
from server.engine.runners.base import EngineRunner
from server.engine.runners.batched import BatchedRunner
from server.engine.runners.serial import SerialRunner


def make_runner(
    engine: SpeechEngine, max_batch: int, device: DeviceThread, share_flow: bool = True
) -> EngineRunner:
    """`max_batch` streams decoded together, or (1) one request at a time."""
    if max_batch > 1:
        return BatchedRunner(engine, max_batch, device, share_flow)
    return SerialRunner(engine, device)


__all__ = ["BatchedRunner", "EngineRunner", "SerialRunner", "make_runner"]
