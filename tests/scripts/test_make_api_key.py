"""`python -m scripts.make_api_key`: a random key, and an entry that finds it and holds no key."""

from __future__ import annotations

import pytest

from access.key_file import parse_keys
from access.keys import Role
from scripts.make_api_key import main


def test_the_entry_finds_the_printed_key_and_holds_only_its_hash(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(['ops "night"', "--role", "admin", "--max-streams", "3"]) == 0
    table, shown = capsys.readouterr()
    key = shown.splitlines()[-1]
    assert key.startswith("cb_") and len(key) > 40
    assert key not in table
    found = parse_keys(table).find(key)
    assert found is not None
    assert (found.name, found.role, found.max_streams) == ('ops "night"', Role.ADMIN, 3)
    main(["web"])
    assert key not in capsys.readouterr().err  # a new key each time
