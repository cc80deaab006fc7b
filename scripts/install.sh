#!/usr/bin/env bash
# Creates .venv with the locked runtime and development dependencies (uv, from uv.lock) and
# builds the web app (frontend/dist, served by the balancer at /).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet "uv>=0.5"
fi
# Byte-compile at install time: otherwise every worker start spends seconds compiling sources
# (PYTHONDONTWRITEBYTECODE environments never cache them).
uv sync --locked --compile-bytecode
if command -v npm >/dev/null 2>&1; then
    (cd frontend && npm ci --no-audit --no-fund && npm run build)
else
    echo "npm not found: skipping the web app build (the API works without it)" >&2
fi
