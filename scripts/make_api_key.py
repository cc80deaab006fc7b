"""Make a new API key: the key, shown once on stderr, and on stdout its entry for the keys
file, which holds only the key's SHA-256 (access/key_file.py; README, Keys).

    python -m scripts.make_api_key NAME [--role user|admin] [--max-streams N] >> keys.toml

The key goes to its holder; the `[[keys]]` entry into the file given to `--api-keys-file`
(the balancer's, or that of a worker serving clients directly), which is read at startup.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Sequence

from access.key_file import parse_keys
from access.keys import Role, digest

KEY_PREFIX = "cb_"  # says what the secret is for, when one turns up in a file or a paste
KEY_BYTES = 32


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def entry(name: str, role: Role, key: str, max_streams: int | None = None) -> str:
    """The key's `[[keys]]` table, hashed (a JSON string is a valid TOML basic string)."""
    lines = [
        "[[keys]]",
        f"name = {json.dumps(name)}",
        f'role = "{role.value}"',
        f'sha256 = "{digest(key).hex()}"',
    ]
    if max_streams is not None:
        lines.append(f"max_streams = {max_streams}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.make_api_key", description=__doc__)
    parser.add_argument("name", help="who or what holds the key: shown on /stats and in logs")
    parser.add_argument("--role", choices=[r.value for r in Role], default=Role.USER.value)
    parser.add_argument("--max-streams", type=int, help="concurrent streams for this key")
    args = parser.parse_args(argv)
    if args.max_streams is not None and args.max_streams < 1:
        parser.error("--max-streams must be at least 1")
    key = new_key()
    table = entry(args.name, Role(args.role), key, args.max_streams)
    found = parse_keys(table).find(key)  # what the service will read finds this key
    assert found is not None and found.name == args.name.strip()
    # Apart, so that `>> keys.toml` appends the entry and never the key.
    print(f"the key for {args.name!r} (shown once; the file keeps only its hash):", file=sys.stderr)
    print(key, file=sys.stderr)
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
