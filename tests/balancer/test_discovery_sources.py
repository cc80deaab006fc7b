"""The sources of workers: `--workers`, a workers file, a DNS name (with a fake resolver)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Iterable
from pathlib import Path

import pytest

from balancer.config import DnsName
from balancer.discovery import DnsSource, SourceUnavailable, StaticSource, WorkersFile
from balancer.discovery.dns import address_url, resolve_addresses
from balancer.discovery.workers_file import parse_workers_file


def discover(source: StaticSource | WorkersFile | DnsSource) -> frozenset[str]:
    return asyncio.run(source.discover())


def test_the_static_source_always_gives_its_workers() -> None:
    source = StaticSource(("http://a:1", "http://b:1"))
    assert discover(source) == discover(source) == {"http://a:1", "http://b:1"}


def test_a_workers_file_lists_urls_and_names_the_lines_it_cannot_use() -> None:
    text = (
        "# the GPU boxes\n"
        "http://10.0.0.5:6093\n"
        "\n"
        "  10.0.0.6:6093   # scheme optional, like --workers\n"
        "http://10.0.0.7:6093/api\n"
        "https://tts.example.com/\n"
        "10.0.0.5:6093\n"
    )
    urls, problems = parse_workers_file(text)
    assert urls == {"http://10.0.0.5:6093", "http://10.0.0.6:6093", "https://tts.example.com"}
    assert len(problems) == 2
    assert problems[0].startswith("line 5: a worker URL has no path") and "skipped" in problems[0]
    assert problems[1] == "line 7: http://10.0.0.5:6093 is listed twice"
    assert parse_workers_file("") == (frozenset(), [])


def test_a_workers_file_is_read_again_when_it_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "workers"
    path.write_text("a:1\nnot a url/x\n")
    source = WorkersFile(path)

    async def scenario() -> None:
        with caplog.at_level(logging.WARNING, logger="balancer"):
            assert await source.discover() == {"http://a:1"}
            assert await source.discover() == {"http://a:1"}
        # One warning, naming the file and the line, however often the file is looked at.
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and f"{path}, line 2: " in warnings[0]

        path.write_text("a:1\nb:1\n")  # in place
        assert await source.discover() == {"http://a:1", "http://b:1"}
        replacement = tmp_path / "workers.new"
        replacement.write_text("b:1\n")
        os.replace(replacement, path)  # atomically, as a config-map update does
        assert await source.discover() == {"http://b:1"}
        path.write_text("")
        assert await source.discover() == frozenset()  # listing none is allowed: all retire

    asyncio.run(scenario())


def test_a_workers_file_that_cannot_be_read_is_unavailable_until_it_is_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "workers"
    path.write_text("a:1\n")
    source = WorkersFile(path)

    async def scenario() -> None:
        assert await source.discover() == {"http://a:1"}
        path.unlink()
        with pytest.raises(SourceUnavailable, match="cannot read it"):
            await source.discover()  # the watcher keeps what it listed last
        path.write_text("a:1\n")  # the same text back: read again all the same
        assert await source.discover() == {"http://a:1"}
        path.write_bytes(b"\xff\xfe not utf-8")
        with pytest.raises(SourceUnavailable, match="cannot read it"):
            await source.discover()

    asyncio.run(scenario())


class FakeResolver:
    """Answers with `addresses`, or raises `error`; counts the names asked."""

    def __init__(self, *addresses: str):
        self.addresses: Iterable[str] = addresses
        self.error: BaseException | None = None
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Iterable[str]:
        self.asked.append((host, port))
        if self.error is not None:
            raise self.error
        return self.addresses


def test_every_address_of_the_name_is_a_worker_on_its_port() -> None:
    resolver = FakeResolver("10.1.0.7", "10.1.0.8", "fd00::5", "10.1.0.7")
    source = DnsSource(DnsName("tts-workers.default.svc", 6093), resolver)
    assert discover(source) == {
        "http://10.1.0.7:6093",
        "http://10.1.0.8:6093",
        "http://[fd00::5]:6093",
    }
    assert resolver.asked == [("tts-workers.default.svc", 6093)]
    assert source.name == "DNS tts-workers.default.svc:6093"
    assert address_url("::1", 80) == "http://[::1]:80"


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "cannot resolve it"),
        (OSError("network is unreachable"), "cannot resolve it"),
        (None, "resolves to no address"),
    ],
)
def test_a_failed_resolution_is_unavailable_not_empty(
    error: BaseException | None, message: str
) -> None:
    resolver = FakeResolver()
    resolver.error = error
    with pytest.raises(SourceUnavailable, match=message):
        discover(DnsSource(DnsName("workers", 6093), resolver))


def test_a_resolver_that_does_not_answer_is_given_up_on() -> None:
    async def silent(host: str, port: int) -> list[str]:
        await asyncio.sleep(30)
        return []

    with pytest.raises(SourceUnavailable, match=r"no answer within 0\.05 s"):
        discover(DnsSource(DnsName("workers", 6093), silent, timeout=0.05))


def test_names_are_resolved_through_the_event_loop() -> None:
    addresses = asyncio.run(resolve_addresses("localhost", 6093))  # /etc/hosts: no network
    assert addresses and set(addresses) <= {"127.0.0.1", "::1"}
    source = DnsSource(DnsName("localhost", 6093))
    assert discover(source) <= {"http://127.0.0.1:6093", "http://[::1]:6093"}
