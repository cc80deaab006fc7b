"""pipecat in an environment of its own, driven from tests through `pipecat_client/drive.py`.

pipecat-ai pins soundfile (~=0.13.1), soxr (~=1.0.0) and protobuf (<7) below the versions the
worker locks, so it cannot join the project's environment. `pipecat_client/` is a project of
its own with its own uv.lock; `uv sync --locked` installs it once into the test cache (later
syncs only check it) and the driver runs there as a subprocess, talking to a live worker
over the network like any pipecat app.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CACHE
from tests.test_install import clean_env, uv_command

PROJECT = Path(__file__).resolve().parent / "pipecat_client"
DRIVER = PROJECT / "drive.py"
ENVIRONMENT = CACHE / "environments" / "pipecat"
SYNC_TIMEOUT_S = 600  # a cold uv cache downloads ~145 MB of wheels
# A driver run: importing pipecat (~1.5 s), one utterance and a second to settle, plus the
# ~4 s pipecat waits before it gives up on a context with no audio.
DRIVE_TIMEOUT_S = 60


def pipecat_python() -> Path:
    """The pipecat environment's interpreter, synced to pipecat_client/uv.lock."""
    command = uv_command()
    if command is None:
        pytest.skip("uv is not installed (scripts/install.sh installs it)")
    sync = [*command, "sync", "--locked", "--quiet", "--project", str(PROJECT)]
    sync += ["--python", sys.executable]
    env = clean_env(UV_PROJECT_ENVIRONMENT=str(ENVIRONMENT))
    started = time.perf_counter()
    # From uv's cache alone when it holds everything, else from the index.
    for offline in (["--offline"], []):
        result = subprocess.run(
            [*sync, *offline], env=env, capture_output=True, text=True, timeout=SYNC_TIMEOUT_S
        )
        if result.returncode == 0:
            break
    else:
        pytest.fail(f"uv sync of {PROJECT} failed:\n{result.stdout}\n{result.stderr}")
    print(f"pipecat environment synced in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return ENVIRONMENT / "bin" / "python"


def drive(
    python: Path,
    service: str,
    url: str,
    text: str,
    *,
    voice: str = "default",
    sample_rate: int = 24000,
    interrupt_after: float | None = None,
    cancel_after: float | None = None,
) -> dict[str, Any]:
    """Runs drive.py (see its docstring) and returns what it printed."""
    args = [str(python), str(DRIVER), service, url, voice, str(sample_rate), text]
    if interrupt_after is not None:
        args += ["--interrupt-after", str(interrupt_after)]
    if cancel_after is not None:
        args += ["--cancel-after", str(cancel_after)]
    result = subprocess.run(
        args, env=clean_env(), capture_output=True, text=True, timeout=DRIVE_TIMEOUT_S
    )
    if result.returncode != 0:
        pytest.fail(f"drive.py failed:\n{result.stdout}\n{result.stderr}")
    output: dict[str, Any] = json.loads(result.stdout)
    return output
