"""Write a full-size Chatterbox checkpoint with random weights, in the official on-disk layout.

The command line over `server.engine.random_checkpoint`, which does the work (and which
`--random-weights` uses from an installed package). The checkpoint speaks noise: use it to test
plumbing, timing and streaming, never quality.

    python scripts/make_random_checkpoint.py --variant turbo|original|multilingual --out DIR \
        [--seed N] [--force] [--check]

An existing DIR that carries the marker file is reused as a cache unless --force is given.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from server.engine.random_checkpoint import (
    DEFAULT_SEED,
    VARIANTS,
    build_random_checkpoint,
    check_checkpoint,
    random_checkpoint_variant,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write a full-size random-weight Chatterbox checkpoint (for tests only)."
    )
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="torch seed for weights")
    parser.add_argument("--force", action="store_true", help="rebuild even if DIR exists")
    parser.add_argument(
        "--check",
        action="store_true",
        help="load the result with upstream from_local and check a tiny synthesis is finite",
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    variant: str = args.variant

    cached = random_checkpoint_variant(out) == variant and not args.force
    try:
        build_random_checkpoint(variant, out, seed=args.seed, force=args.force)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if cached:
        print(f"{out} already holds a random {variant} checkpoint; use --force to rebuild")
    if args.check:
        check_checkpoint(variant, out, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
