"""A small SSE reader for tests: events from an httpx streaming response."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    event: str
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


def iter_events(response: httpx.Response) -> Iterator[Event]:
    return parse_events(response.iter_lines())


def events_in(body: str) -> list[Event]:
    """The events of a whole SSE body."""
    return list(parse_events(body.splitlines()))


def parse_events(lines: Iterable[str]) -> Iterator[Event]:
    name, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield Event(name, "\n".join(data))
            name, data = "message", []
        elif line.startswith(":"):
            continue  # comment: keep-alive ping
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
    if data:
        yield Event(name, "\n".join(data))
