"""Whether a listening address is reachable only from this machine: a process that serves
without keys on any other address warns at startup."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost, or "" (every interface)


def open_warning(host: str, port: int, what: str) -> str | None:
    """The startup warning for a process without keys listening on `host`, if it needs one."""
    if is_loopback(host):
        return None
    return (
        f"no --api-keys-file: anyone who can reach {host}:{port} can use this {what} "
        "(synthesize, and create or delete voices); see README, Keys"
    )
