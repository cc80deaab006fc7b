"""The keys file: TOML, one `[[keys]]` table per key.

    [[keys]]
    name = "web-app"                  # shown on /stats and in logs; unique
    role = "user"                     # user: synthesize, list voices; admin: also edit voices
    sha256 = "9f86d081884c7d65..."    # the key's SHA-256 in hex (or: key = "..." in clear)
    max_streams = 4                   # optional: concurrent streams for this key

Each entry gives the key either hashed (`sha256`, recommended: the file then holds nothing
that opens the door) or in clear (`key`). `python -m scripts.make_api_key NAME` makes a new
random key and prints its entry. Anything else in an entry is an error, so a misspelt field
cannot silently drop a limit.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from access.keys import ApiKey, KeyRing, Role, digest

FIELDS = frozenset({"name", "role", "sha256", "key", "max_streams"})
HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


class KeyFileError(ValueError):
    """The keys file cannot be used; the message says where and why."""


def load_key_file(path: Path) -> KeyRing:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the keys file ({exc.strerror or exc})") from None
    try:
        return parse_keys(text)
    except KeyFileError as exc:
        raise KeyFileError(f"{path}: {exc}") from None


def parse_keys(text: str) -> KeyRing:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KeyFileError(f"not valid TOML ({exc})") from None
    extra = set(document) - {"keys"}
    if extra:
        raise KeyFileError(f"unknown top-level entries {sorted(extra)}: write [[keys]] tables")
    entries = document.get("keys")
    if not isinstance(entries, list) or not entries:
        raise KeyFileError("no keys: add [[keys]] tables (or run without a keys file, open)")
    keys = [_entry(i, entry) for i, entry in enumerate(entries, start=1)]
    names, digests = set(), set()
    for i, key in enumerate(keys, start=1):
        if key.name in names:
            raise KeyFileError(f"key {i}: the name {key.name!r} is used twice")
        if key.sha256 in digests:
            raise KeyFileError(f"key {i} ({key.name!r}): the same key is listed twice")
        names.add(key.name)
        digests.add(key.sha256)
    return KeyRing(keys)


def _entry(index: int, entry: Any) -> ApiKey:
    where = f"key {index}"
    if not isinstance(entry, dict):
        raise KeyFileError(f"{where}: expected a [[keys]] table")
    unknown = set(entry) - FIELDS
    if unknown:
        raise KeyFileError(f"{where}: unknown fields {sorted(unknown)} (known: {sorted(FIELDS)})")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise KeyFileError(f"{where}: needs a name")
    where = f"{where} ({name!r})"
    role = entry.get("role")
    if role not in {r.value for r in Role}:
        raise KeyFileError(f"{where}: role must be one of {', '.join(r.value for r in Role)}")
    if ("sha256" in entry) == ("key" in entry):
        raise KeyFileError(f"{where}: give exactly one of sha256 (hex digest) or key (in clear)")
    if "key" in entry:
        clear = entry["key"]
        if not isinstance(clear, str) or not clear:
            raise KeyFileError(f"{where}: key must be a non-empty string")
        sha256 = digest(clear)
    else:
        hexed = entry["sha256"]
        if not isinstance(hexed, str) or not HEX_DIGEST.fullmatch(hexed):
            raise KeyFileError(f"{where}: sha256 must be 64 hexadecimal digits")
        sha256 = bytes.fromhex(hexed)
    limit = entry.get("max_streams")
    if limit is not None and (type(limit) is not int or limit < 1):
        raise KeyFileError(f"{where}: max_streams must be a whole number, at least 1")
    return ApiKey(name.strip(), Role(role), sha256, limit)
