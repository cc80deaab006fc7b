"""A plain-asyncio network backend for httpcore, the layer under httpx.

httpcore's default backend goes through anyio, whose socket stream resumes and pauses the
transport around every read: two `epoll_ctl` system calls per SSE event, plus a cancel scope.
With hundreds of streams each sending ten events a second, that was about a tenth of the
balancer's CPU. This backend keeps the bytes a protocol receives in a buffer and only touches
the transport for flow control, when a client reads slower than its worker writes.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any, cast

import httpcore

# Reading from the worker pauses while this much is waiting for a slow client...
HIGH_WATER_BYTES = 1024 * 1024
# ...and resumes once the client has taken most of it.
LOW_WATER_BYTES = 256 * 1024

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class _BufferedProtocol(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._read_deadline = 0.0
        self._read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, but not necessarily an asyncio.Transport subclass (uvloop's).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER_BYTES and not self.reading_paused:
            assert self.transport is not None
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
        self.eof = True
        self.error = exc
        self._wake_reader()
        self.writing_paused = False
        self._wake_writer()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_writer()

    def _wake_reader(self) -> None:
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)

    def _wake_writer(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    async def readable(self, timeout: float | None) -> None:
        """Wait for data or EOF; TimeoutError after `timeout` seconds without either.

        A stream waits once per event, so the timer is not rearmed on every wait: each wait
        only moves the deadline, and the timer, when it fires, checks it and rearms itself.
        """
        self._readable = self.loop.create_future()
        if timeout is not None:
            self._read_deadline = self.loop.time() + timeout
            timer = self._read_timer
            if timer is not None and timer.when() > self._read_deadline:
                timer.cancel()  # a shorter timeout than the last one: fire sooner
                timer = None
            if timer is None:
                self._read_timer = self.loop.call_at(self._read_deadline, self._check_deadline)
        try:
            await self._readable
        finally:
            self._readable = None

    def _check_deadline(self) -> None:
        self._read_timer = None
        if self._readable is None or self._readable.done():
            return  # not waiting now: the next wait arms a timer of its own
        if self.loop.time() >= self._read_deadline:
            self._readable.set_exception(TimeoutError())
        else:
            self._read_timer = self.loop.call_at(self._read_deadline, self._check_deadline)

    async def writable(self, timeout: float | None) -> None:
        self._writable = self.loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._writable
        finally:
            self._writable = None

    def take(self, max_bytes: int) -> bytes:
        if len(self.buffer) <= max_bytes:
            data = bytes(self.buffer)
            self.buffer.clear()
        else:
            data = bytes(self.buffer[:max_bytes])
            del self.buffer[:max_bytes]
        if self.reading_paused and len(self.buffer) < LOW_WATER_BYTES:
            assert self.transport is not None
            self.transport.resume_reading()
            self.reading_paused = False
        return data


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _BufferedProtocol):
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.buffer and not protocol.eof:
            try:
                await protocol.readable(timeout)
            except TimeoutError:
                raise httpcore.ReadTimeout(f"no data for {timeout} s") from None
        if protocol.buffer:
            return protocol.take(max_bytes)
        if protocol.error is not None:
            raise httpcore.ReadError(str(protocol.error) or type(protocol.error).__name__)
        return b""  # the peer closed the connection

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        while self._protocol.writing_paused:
            try:
                await self._protocol.writable(timeout)
            except TimeoutError:
                raise httpcore.WriteTimeout(f"could not write for {timeout} s") from None
        if self._protocol.error is not None:
            raise httpcore.WriteError(str(self._protocol.error))

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = self._protocol.loop
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout("TLS handshake timed out") from None
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc)) from exc
        assert transport is not None
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":
            # Asked of idle keep-alive connections: data or EOF there means the worker closed
            # it (or broke the protocol), so it must not be reused.
            return bool(self._protocol.buffer) or self._protocol.eof
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    lambda: _BufferedProtocol(loop), host, port, local_addr=local
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        _apply(transport, socket_options)  # asyncio has already set TCP_NODELAY
        return AsyncioStream(transport, protocol)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_unix_connection(
                    lambda: _BufferedProtocol(loop), path
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"connecting to {path} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        _apply(transport, socket_options)
        return AsyncioStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _apply(transport: asyncio.Transport, options: Iterable[SocketOption] | None) -> None:
    sock: socket.socket | None = transport.get_extra_info("socket")
    if sock is None:
        return
    for option in options or ():
        sock.setsockopt(*option)
