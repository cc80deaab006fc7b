"""Voice uploads for deployments whose workers do not share a voices directory.

Workers on one host share their voices directory, so a voice saved through any worker is
usable by all and the plain proxy is enough. Workers on several hosts each have their own: with
`--voice-broadcast`, `POST /voices` and `DELETE /voices/{id}` go to every worker in rotation at
once. Voice ids are derived from the name and the audio, so every worker gives the voice the
same id. A worker that is down during the upload misses the voice: re-upload it (same id) once
the worker is back, or share the directory (NFS, a synced volume) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass

import httpx
from starlette.types import Send

from balancer.counters import TotalCounters
from balancer.pool import Lease, Worker, WorkerPool
from balancer.replies import send_json, send_reply, send_unavailable
from balancer.request import UpstreamRequest
from balancer.upstream import UpstreamClients

DROP_HEADERS = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"date", b"server"})


def is_voice_change(method: str, path: str) -> bool:
    return (method == "POST" and path.rstrip("/") == "/voices") or (
        method == "DELETE" and path.startswith("/voices/")
    )


@dataclass(frozen=True)
class Reply:
    worker: Worker
    status: int = 0  # 0: no answer
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    error: str = ""

    def ok(self, method: str) -> bool:
        # Deleting a voice a worker never had is fine: the goal is that no worker has it.
        return 200 <= self.status < 300 or (method == "DELETE" and self.status == 404)


class VoiceBroadcast:
    def __init__(
        self,
        pool: WorkerPool,
        clients: UpstreamClients,
        totals: TotalCounters,
        retry_after: int,
    ):
        self.pool = pool
        self.clients = clients
        self.totals = totals
        self.retry_after = retry_after

    async def __call__(self, request: UpstreamRequest, send: Send) -> None:
        targets = self.pool.available()
        if not targets:
            await send_unavailable(send, self.retry_after, "no healthy worker is available")
            self.totals.no_worker += 1
            return
        leases = [Lease(w) for w in targets]
        try:
            replies = await asyncio.gather(*(self._send_one(lease, request) for lease in leases))
        finally:
            for lease in leases:
                lease.release()
        await self._answer(request.method, replies, send)
        self.totals.completed += 1

    async def _send_one(self, lease: Lease, request: UpstreamRequest) -> Reply:
        worker = lease.worker
        worker.counters.requests += 1
        client = self.clients.next()
        try:
            response = await client.send(request.to(client, httpx.URL(worker.url)))
        except httpx.HTTPError as exc:
            worker.counters.errors += 1
            return Reply(worker, error=f"{type(exc).__name__}: {exc}")
        worker.counters.completed += 1
        raw = response.headers.raw
        headers = tuple((k.lower(), v) for k, v in raw if k.lower() not in DROP_HEADERS)
        return Reply(worker, response.status_code, headers, response.content)

    async def _answer(self, method: str, replies: list[Reply], send: Send) -> None:
        good = [r for r in replies if r.ok(method)]
        if len(good) == len(replies):
            # Everyone agrees: answer like one worker would (a 404 only if nobody had it).
            chosen = next((r for r in good if r.status != 404), good[0])
            count = f"{len(replies)}/{len(replies)}".encode()
            headers = [*chosen.headers, (b"x-voice-broadcast", count)]
            await send_reply(send, chosen.status, headers, chosen.body)
            return
        if not good:
            answered = [r for r in replies if r.status]
            if answered and all(r.status < 500 for r in answered):
                # The request itself is wrong (bad audio, bad name): every worker says so.
                first = answered[0]
                await send_reply(send, first.status, list(first.headers), first.body)
                return
        report = [
            {"worker": r.worker.url, "status": r.status or None, "error": r.error or None}
            for r in replies
        ]
        body: dict[str, object] = {
            "error": f"the change reached {len(good)} of {len(replies)} workers; retry it "
            "(voice ids are stable, so retrying is safe)",
            "workers": report,
        }
        if good and good[0].body:
            with contextlib.suppress(ValueError):
                body["voice"] = json.loads(good[0].body)
        await send_json(send, 502, body)
