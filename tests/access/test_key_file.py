"""The keys file: TOML `[[keys]]` tables, hashed or clear keys, and clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from access.key_file import KeyFileError, load_key_file, parse_keys
from access.keys import Role, digest

USER_KEY = "user-key-0123456789abcdef"
ADMIN_SHA = hashlib.sha256(b"admin-key-0123456789abcdef").hexdigest()


def test_hashed_and_clear_keys_are_found_by_the_key() -> None:
    ring = parse_keys(
        f"""
        [[keys]]
        name = "web"
        role = "user"
        key = "{USER_KEY}"
        max_streams = 2

        [[keys]]
        name = "ops"
        role = "admin"
        sha256 = "{ADMIN_SHA.upper()}"
        """
    )
    assert len(ring) == 2
    web = ring.find(USER_KEY)
    assert web is not None and (web.name, web.role, web.max_streams) == ("web", Role.USER, 2)
    ops = ring.find("admin-key-0123456789abcdef")
    assert ops is not None and (ops.role, ops.max_streams) == (Role.ADMIN, None)
    assert ring.find("admin-key-0123456789abcdeF") is None
    assert ring.find("") is None
    assert web.sha256 == digest(USER_KEY)


def test_a_key_never_shows_in_its_repr() -> None:
    key = parse_keys(f'[[keys]]\nname = "web"\nrole = "user"\nkey = "{USER_KEY}"\n').find(USER_KEY)
    assert key is not None and USER_KEY not in repr(key) and digest(USER_KEY).hex() not in repr(key)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("[[keys", "not valid TOML"),
        ("", "no keys"),
        ('name = "x"', "unknown top-level"),
        ('[[keys]]\nrole = "user"\nkey = "k"', "needs a name"),
        ('[[keys]]\nname = "a"\nrole = "root"\nkey = "k"', "role must be"),
        ('[[keys]]\nname = "a"\nrole = "user"', "exactly one of"),
        (f'[[keys]]\nname = "a"\nrole = "user"\nkey = "k"\nsha256 = "{ADMIN_SHA}"', "exactly one"),
        ('[[keys]]\nname = "a"\nrole = "user"\nsha256 = "abc"', "64 hexadecimal"),
        ('[[keys]]\nname = "a"\nrole = "user"\nkey = "k"\nmax_stream = 2', "unknown fields"),
        ('[[keys]]\nname = "a"\nrole = "user"\nkey = "k"\nmax_streams = 0', "at least 1"),
        ('[[keys]]\nname = "a"\nrole = "user"\nkey = "k"\nmax_streams = true', "whole number"),
        (
            '[[keys]]\nname = "a"\nrole = "user"\nkey = "k"\n'
            '[[keys]]\nname = "a"\nrole = "admin"\nkey = "j"',
            "used twice",
        ),
        (
            '[[keys]]\nname = "a"\nrole = "user"\nkey = "k"\n'
            f'[[keys]]\nname = "b"\nrole = "admin"\nsha256 = "{digest("k").hex()}"',
            "listed twice",
        ),
    ],
)
def test_a_bad_file_says_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(KeyFileError, match=complaint):
        parse_keys(text)


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        load_key_file(tmp_path / "missing.toml")
    bad = tmp_path / "keys.toml"
    bad.write_text("[[keys]]\n")
    with pytest.raises(KeyFileError, match=str(bad)):
        load_key_file(bad)
