#!/usr/bin/env bash
# Installs everything the tests need, then runs lint, type checks and the test suite.
# Full-size random-weight checkpoints are built once into $CHATTERBOX_TEST_CACHE
# (default ~/.cache/chatterbox-streaming) and reused by later runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export CHATTERBOX_TEST_CACHE="${CHATTERBOX_TEST_CACHE:-$HOME/.cache/chatterbox-streaming}"
for variant in turbo original; do
    .venv/bin/python scripts/make_random_checkpoint.py --variant "$variant" \
        --out "$CHATTERBOX_TEST_CACHE/checkpoints/$variant"
done
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
