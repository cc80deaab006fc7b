"""What a supervised process's health is, in a few words, from its /health (and, for a
worker, from the balancer's /stats: a worker counts as healthy once the balancer routes to
it, so that a rolling restart never takes the next worker down before that)."""

from __future__ import annotations

from typing import Any

import httpx

from deployment.plan import Program, Role

READY = "ready"


class HealthProbe:
    def __init__(
        self, client: httpx.AsyncClient, balancer_url: str, balancer_key: str | None = None
    ):
        self.client = client
        self.balancer_url = balancer_url
        # The balancer's /stats may need an admin key (`--restrict-ops`): the supervisor's own.
        self._stats_headers = {"Authorization": f"Bearer {balancer_key}"} if balancer_key else {}

    async def state(self, program: Program) -> str:
        """`ready`, or what keeps it from being healthy (`failed (...)` for a failed model)."""
        try:
            response = await self.client.get(f"{program.url}/health")
        except httpx.HTTPError:
            return "not answering"
        if program.role is Role.BALANCER:
            return READY  # it answers: it is up (503 only says that no worker is ready)
        body = _json(response)
        status = str(body.get("status", f"HTTP {response.status_code}"))
        if status == "failed":
            return f"failed ({body.get('error', 'no reason given')})"
        if status != READY:
            return status
        in_rotation = await self.in_rotation(program.url)
        return "joining the balancer" if in_rotation is False else READY

    async def in_rotation(self, url: str) -> bool | None:
        """Whether the balancer routes to `url` (None: the balancer is not answering, so the
        worker's own word has to do)."""
        try:
            response = await self.client.get(
                f"{self.balancer_url}/stats?format=json", headers=self._stats_headers
            )
        except httpx.HTTPError:
            return None
        workers = _json(response).get("workers", [])
        return any(
            isinstance(w, dict) and w.get("url") == url and w.get("in_rotation") for w in workers
        )


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
