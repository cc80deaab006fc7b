"""`AsyncioBackend`: httpcore's network interface over plain asyncio, against real sockets."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpcore
import pytest

from balancer import network
from balancer.network import AsyncioBackend

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def tcp_server(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
    async with server:
        yield server.sockets[0].getsockname()[1]


def run(coroutine: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coroutine, 20))


def test_bytes_go_both_ways_and_eof_reads_empty() -> None:
    async def echo_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.readexactly(5)).upper())
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        async with tcp_server(echo_once) as port:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
            await stream.write(b"hello")
            received = b""
            while chunk := await stream.read(65536, timeout=5):
                received += chunk
            assert received == b"HELLO"
            assert stream.get_extra_info("is_readable")  # EOF: not reusable
            assert stream.get_extra_info("server_addr")[1] == port
            await stream.aclose()

    run(scenario())


def test_a_silent_peer_times_out_even_after_earlier_reads() -> None:
    async def talk_then_hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(3):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.1)
        await asyncio.sleep(10)

    async def scenario() -> None:
        async with tcp_server(talk_then_hang) as port:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", port)
            loop = asyncio.get_running_loop()
            # Each read moves the deadline on; the first timer's deadline must not cut it.
            for _ in range(3):
                assert await stream.read(10, timeout=0.25) == b"x"
            started = loop.time()
            with pytest.raises(httpcore.ReadTimeout):
                await stream.read(10, timeout=0.25)
            assert 0.2 <= loop.time() - started < 1.0
            await stream.aclose()

    run(scenario())


def test_a_shorter_timeout_after_a_longer_one_fires_on_time() -> None:
    async def talk_then_hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(10)

    async def scenario() -> None:
        async with tcp_server(talk_then_hang) as port:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", port)
            assert await stream.read(10, timeout=30) == b"x"
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(httpcore.ReadTimeout):
                await stream.read(10, timeout=0.2)
            assert loop.time() - started < 1.0
            await stream.aclose()

    run(scenario())


def test_a_closed_idle_connection_is_readable() -> None:
    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def scenario() -> None:
        async with tcp_server(close_at_once) as port:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", port)
            for _ in range(100):
                if stream.get_extra_info("is_readable"):
                    break
                await asyncio.sleep(0.01)
            assert stream.get_extra_info("is_readable")
            assert await stream.read(10) == b""

    run(scenario())


def test_a_slow_reader_pauses_the_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network, "HIGH_WATER_BYTES", 64 * 1024)
    monkeypatch.setattr(network, "LOW_WATER_BYTES", 16 * 1024)
    payload = bytes(range(256)) * 16 * 1024  # 4 MiB

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        async with tcp_server(flood) as port:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", port)
            await asyncio.sleep(0.2)  # let the flood fill the buffer
            protocol = stream._protocol  # type: ignore[attr-defined]
            assert protocol.reading_paused and len(protocol.buffer) < 2 * 1024 * 1024
            received = bytearray()
            while chunk := await stream.read(65536, timeout=5):
                received += chunk
            assert bytes(received) == payload

    run(scenario())


def test_connection_failures_are_httpcore_errors() -> None:
    async def scenario() -> None:
        backend = AsyncioBackend()
        async with tcp_server(lambda r, w: asyncio.sleep(0)) as port:
            pass  # closed: nothing listens on the port any more
        with pytest.raises(httpcore.ConnectError):
            await backend.connect_tcp("127.0.0.1", port, timeout=5)
        with pytest.raises(httpcore.ConnectError):
            await backend.connect_unix_socket("/nonexistent/socket", timeout=5)

    run(scenario())


def test_tls_upgrades_the_stream(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
    subprocess.run(
        [*openssl, *subject, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"secret")
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        async with tcp_server(greet, tls=server_tls) as port:
            plain = await AsyncioBackend().connect_tcp("127.0.0.1", port)
            stream = await plain.start_tls(client_tls, server_hostname="localhost", timeout=5)
            assert stream.get_extra_info("ssl_object") is not None
            assert await stream.read(100, timeout=5) == b"secret"
            await stream.aclose()

    run(scenario())
