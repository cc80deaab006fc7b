"""`--workers URL[,URL...]`: the same workers for the balancer's whole life."""

from __future__ import annotations

from collections.abc import Iterable


class StaticSource:
    name = "--workers"

    def __init__(self, urls: Iterable[str]):
        self.urls = frozenset(urls)

    async def discover(self) -> frozenset[str]:
        return self.urls
