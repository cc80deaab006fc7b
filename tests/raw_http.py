"""Raw HTTP/1.1 over a socket, for requests no client library would send: ambiguous framing,
headers or bodies sent a byte at a time, connections left silent."""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


@dataclass(frozen=True)
class Exchange:
    """What came back on one connection, until the server closed it or `timeout` passed."""

    data: bytes
    closed: bool  # by the server (else still open when the wait ended)
    seconds: float  # from the first byte sent to the close, or to the end of the wait

    @property
    def statuses(self) -> list[int]:
        return [int(m.group(1)) for m in STATUS_LINE.finditer(self.data)]

    def json(self) -> Any:
        """The body of the (only) response, as JSON."""
        return json.loads(self.data.split(b"\r\n\r\n", 1)[1])

    def header(self, name: str) -> str | None:
        head = self.data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        for line in head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


def exchange(
    url: str,
    data: bytes = b"",
    *,
    drip: bytes = b"",
    drip_interval: float = 0.1,
    timeout: float = 10.0,
) -> Exchange:
    """Send `data` at once, then `drip` a byte every `drip_interval` seconds, and read until
    the server closes the connection or `timeout` seconds have passed."""
    address = urlsplit(url)
    assert address.hostname is not None and address.port is not None
    received = bytearray()
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
        started = time.monotonic()
        deadline = started + timeout
        try:
            sock.sendall(data)
            for byte in drip:
                sock.sendall(bytes([byte]))
                time.sleep(drip_interval)
                if time.monotonic() > deadline:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed while we were still sending: what did it say?
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                return Exchange(bytes(received), True, time.monotonic() - started)
            if not chunk:
                return Exchange(bytes(received), True, time.monotonic() - started)
            received += chunk
        return Exchange(bytes(received), False, time.monotonic() - started)
