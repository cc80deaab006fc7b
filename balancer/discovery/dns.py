"""`--workers-dns NAME:PORT`: every address NAME resolves to is a worker, `http://ADDRESS:PORT`.

That is what a Kubernetes headless service gives: one A (or AAAA) record per ready pod. NAME
is resolved again every discovery interval through the event loop's `getaddrinfo` (asyncio
runs it in a thread, so the loop never blocks). A resolution that fails or finds nothing keeps
the last known addresses: a DNS hiccup must not empty the pool, and workers that are really
gone fail their health checks anyway.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable

from balancer.config import DnsName
from balancer.discovery.base import SourceUnavailable

# A resolver that does not answer must not hold up discovery for long (the other sources are
# asked in the same round); the system resolver's own timeouts can add up to half a minute.
DNS_TIMEOUT_S = 5.0

Resolve = Callable[[str, int], Awaitable[Iterable[str]]]


async def resolve_addresses(host: str, port: int) -> list[str]:
    """The IPv4 and IPv6 addresses `host` resolves to."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    families = (socket.AF_INET, socket.AF_INET6)
    return [str(sockaddr[0]) for family, _, _, _, sockaddr in infos if family in families]


def address_url(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address  # IPv6 goes in brackets
    return f"http://{host}:{port}"


class DnsSource:
    def __init__(
        self, target: DnsName, resolve: Resolve = resolve_addresses, timeout: float = DNS_TIMEOUT_S
    ):
        self.target = target
        self.name = f"DNS {target}"
        self.resolve = resolve
        self.timeout = timeout

    async def discover(self) -> frozenset[str]:
        try:
            async with asyncio.timeout(self.timeout):
                addresses = await self.resolve(self.target.host, self.target.port)
        except TimeoutError as exc:
            raise SourceUnavailable(f"no answer within {self.timeout:g} s") from exc
        except OSError as exc:  # socket.gaierror: no such name, no answer, ...
            raise SourceUnavailable(f"cannot resolve it ({exc})") from exc
        urls = frozenset(address_url(address, self.target.port) for address in addresses)
        if not urls:
            raise SourceUnavailable("it resolves to no address")
        return urls
