"""Async clients for tests with many concurrent streams (cancelling a task hangs up)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

STREAM_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=0)


@dataclass
class StreamResult:
    status: int = 0
    worker: str = ""
    events: list[tuple[str, Any]] = field(default_factory=list)  # (event, parsed data)

    @property
    def chunk_ids(self) -> list[int]:
        return [data["chunk_id"] for name, data in self.events if name == "audio_chunk"]

    @property
    def last_event(self) -> str:
        return self.events[-1][0] if self.events else ""


async def stream_events(
    client: httpx.AsyncClient,
    url: str,
    form: dict[str, str] | None = None,
    *,
    hang_up_after: int | None = None,
    result: StreamResult | None = None,
) -> StreamResult:
    """POST a synthesis form and collect the SSE events; hang up after `hang_up_after` audio
    chunks. `result` is filled in as events arrive, so a cancelled caller still sees them."""
    result = result if result is not None else StreamResult()
    async with client.stream("POST", f"{url}/synthesize-stream", data=form or {"text": "Hi."}) as r:
        result.status = r.status_code
        result.worker = r.headers.get("x-upstream-worker", "")
        if r.status_code != 200:
            await r.aread()
            return result
        name, data = "message", ""
        async for line in r.aiter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif not line and data:
                result.events.append((name, json.loads(data)))
                name, data = "message", ""
                if hang_up_after is not None and len(result.chunk_ids) >= hang_up_after:
                    return result
    return result


async def apoll(
    probe: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def get_stats(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"{url}/stats")).json()
    return body


async def in_flight(client: httpx.AsyncClient, url: str) -> dict[str, int]:
    stats = await get_stats(client, url)
    return {w["url"]: w["in_flight"] for w in stats["workers"]}


async def wait_in_flight(client: httpx.AsyncClient, url: str, total: int) -> dict[str, int]:
    async def reached() -> bool:
        return sum((await in_flight(client, url)).values()) == total

    await apoll(reached, what=f"{total} requests in flight")
    return await in_flight(client, url)


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
