"""`--workers-file PATH`: worker URLs, one a line, read again whenever the file changes.

Blank lines and `#` comments are skipped. A line that is not a worker URL is skipped with a
warning naming it, so one typo does not take the other workers away. A file that cannot be read
(deleted, or its directory gone) keeps the workers it listed last; an empty one lists none.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from balancer.config import worker_url
from balancer.discovery.base import SourceUnavailable

logger = logging.getLogger("balancer")


def parse_workers_file(text: str) -> tuple[frozenset[str], list[str]]:
    """The URLs a file lists, and a problem per line that could not be used."""
    urls: set[str] = set()
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            url = worker_url(entry)
        except ValueError as exc:
            problems.append(f"line {number}: {exc}; skipped")
            continue
        if url in urls:
            problems.append(f"line {number}: {url} is listed twice")
        urls.add(url)
    return frozenset(urls), problems


class WorkersFile:
    def __init__(self, path: Path):
        self.path = path
        self.name = f"workers file {path}"
        # (inode, mtime, size) when last read: the file is read again only when one changes,
        # and parsed again (warnings and all) only when its text did.
        self._signature: tuple[int, int, int] | None = None
        self._text: str | None = None
        self._urls = frozenset[str]()

    async def discover(self) -> frozenset[str]:
        try:
            # In a thread: the file may sit on a network filesystem that is slow to answer.
            text = await asyncio.to_thread(self._read_if_changed)
        except (OSError, UnicodeDecodeError) as exc:
            self._signature = None  # read it whole once it is back
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SourceUnavailable(f"cannot read it ({reason})") from exc
        if text is not None and text != self._text:
            self._text = text
            self._urls, problems = parse_workers_file(text)
            for problem in problems:
                logger.warning("%s, %s", self.name, problem)
        return self._urls

    def _read_if_changed(self) -> str | None:
        """The file's text, or None when it has not changed since the last read."""
        stat = os.stat(self.path)
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if signature == self._signature:
            return None
        text = self.path.read_text(encoding="utf-8")
        self._signature = signature
        return text
