#!/usr/bin/env bash
# Installs everything the tests need, then runs lint, type checks and every test suite:
# Python (engine, worker, balancer) and the web app (unit tests and browser tests).
# Full-size random-weight checkpoints are built once into $CHATTERBOX_TEST_CACHE
# (default ~/.cache/chatterbox-streaming) and reused by later runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export CHATTERBOX_TEST_CACHE="${CHATTERBOX_TEST_CACHE:-$HOME/.cache/chatterbox-streaming}"
for variant in turbo original multilingual; do
    .venv/bin/python scripts/make_random_checkpoint.py --variant "$variant" \
        --out "$CHATTERBOX_TEST_CACHE/checkpoints/$variant"
done
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"

# The web app: Debian's Chromium drives the browser tests (a browser download is not possible).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "chromium is missing: run 'apt-get install -y chromium' as root" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
(cd frontend && npm run ci)  # npm ci ran in install.sh
