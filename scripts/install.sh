#!/usr/bin/env bash
# Creates .venv with the locked runtime and development dependencies (uv, from uv.lock).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet "uv>=0.5"
fi
# Byte-compile at install time: otherwise every worker start spends seconds compiling sources
# (PYTHONDONTWRITEBYTECODE environments never cache them).
uv sync --locked --compile-bytecode
