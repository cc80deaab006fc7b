"""The project installed as a package (not run from the checkout) serves `--random-weights`.

A fresh virtual environment outside the checkout gets the locked dependencies and then the
project itself, built as `uv pip install DIR` builds it. A worker started from there, in a
directory of its own, must find everything it needs in the installed package: nothing under
`scripts/` or the checkout is importable. It reuses the cached random checkpoint.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import soundfile

from server.config import ENV_ALIASES, ENV_PREFIX
from tests.conftest import CACHE

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parents[1]
# What a source tree needs no copy of: build outputs, caches, environments, local data.
NOT_SOURCE = (
    ".git",
    ".venv",
    "node_modules",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "logs",
    "checkpoints",
    "voices",
    "artifacts",
)
FORM = {"text": "Installed.", "seed": "3", "max_new_tokens": "5"}
READY_SECONDS = 300


def uv_command() -> list[str] | None:
    """uv on PATH, or the module that scripts/install.sh pip-installs when it is not."""
    found = shutil.which("uv")
    if found:
        return [found]
    for python in filter(None, (sys.executable, shutil.which("python3"))):
        probe = subprocess.run([python, "-m", "uv", "--version"], capture_output=True)
        if probe.returncode == 0:
            return [python, "-m", "uv"]
    return None


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that points Python or the worker elsewhere."""
    dropped = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", *ENV_ALIASES.values()}
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in dropped and not key.startswith(ENV_PREFIX)
    }
    return env | {"UV_PYTHON_DOWNLOADS": "never"} | extra


class Uv:
    """Runs uv commands, timing each step."""

    def __init__(self, command: list[str]):
        self.command = command
        self.seconds: dict[str, float] = {}

    def run(self, step: str, *args: str, cwd: Path | None = None) -> None:
        started = time.perf_counter()
        result = self._run(args, cwd)
        self.seconds[step] = time.perf_counter() - started
        if result.returncode != 0:
            pytest.fail(f"{step}: uv {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")

    def install(self, step: str, python: Path, *args: str) -> None:
        """`uv pip install` into `python`'s environment, run outside the checkout (uv would
        apply the project's [tool.uv] settings in it). From uv's cache alone when it holds
        everything, else from the index: a cold cache (CI's is warm, as installing the
        project's own environment fills it with the same locked wheels)."""
        command = ("pip", "install", "--quiet", "--python", str(python), *args)
        started = time.perf_counter()
        if self._run((*command, "--offline"), python.parent).returncode == 0:
            self.seconds[step] = time.perf_counter() - started
            return
        self.run(step, *command, cwd=python.parent)

    def _run(self, args: tuple[str, ...], cwd: Path | None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command, *args],
            cwd=cwd,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=1200,
        )


@pytest.fixture(scope="module")
def installed_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment, outside the checkout, with the locked dependencies and the project."""
    command = uv_command()
    if command is None:
        pytest.skip("uv is not installed (scripts/install.sh installs it)")
    uv = Uv(command)
    root = tmp_path_factory.mktemp("install")
    requirements = root / "requirements.txt"
    # The runtime dependencies exactly as uv.lock pins them (no dev tools, not the project).
    export = ("export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project", "--no-header")
    uv.run("export", *export, "--quiet", "-o", str(requirements), cwd=REPO)
    venv = root / "venv"
    uv.run("venv", "venv", "--quiet", "--python", sys.executable, str(venv))
    python = venv / "bin" / "python"
    # The export is the whole locked closure, so nothing is resolved again: a resolver would
    # not know the [tool.uv] overrides that keep chatterbox-tts's gradio pin out.
    uv.install("dependencies", python, "--no-deps", "-r", str(requirements))
    # Built from a copy of the source tree: a build in the checkout would leave build/ in it.
    source = root / "source"
    started = time.perf_counter()
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    uv.seconds["copy"] = time.perf_counter() - started
    uv.install("project", python, "--no-deps", str(source))
    shutil.rmtree(source)
    steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in uv.seconds.items())
    print(f"installed in {sum(uv.seconds.values()):.1f} s ({steps})", file=sys.stderr)
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_installed_package_is_the_one_imported(installed_python: Path, tmp_path: Path) -> None:
    probe = (
        "import importlib.util, balancer, server, server.engine.random_checkpoint as rc\n"
        "print(server.__file__); print(balancer.__file__); print(rc.__file__)\n"
        "print(importlib.util.find_spec('scripts'))\n"
    )
    result = subprocess.run(
        [str(installed_python), "-c", probe],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    *files, scripts_spec = result.stdout.split()
    site_packages = installed_python.parents[1]
    for file in map(Path, files):
        assert file.is_relative_to(site_packages) and "site-packages" in file.parts, file
        assert not file.resolve().is_relative_to(REPO), file
    assert scripts_spec == "None"  # scripts/ is not part of the package and not reachable


@pytest.fixture(scope="module")
def installed_worker(
    installed_python: Path, turbo_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`python -m server --random-weights` from the installed package, in a directory of its own.

    `turbo_dir` is the suite's cached checkpoint, which the worker finds (and reuses) through
    CHATTERBOX_TEST_CACHE instead of building its own.
    """
    assert turbo_dir == CACHE / "checkpoints" / "turbo"
    workdir = tmp_path_factory.mktemp("worker")
    port = free_port()
    log = (workdir / "worker.log").open("w")
    worker = subprocess.Popen(
        [
            str(installed_python),
            "-m",
            "server",
            "--random-weights",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cpu",
            "--voices-dir",
            str(workdir / "voices"),
        ],
        cwd=workdir,
        env=clean_env(CHATTERBOX_TEST_CACHE=str(CACHE), HF_HUB_OFFLINE="1"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        status = None
        while status != "ready":
            if worker.poll() is not None or time.monotonic() - started > READY_SECONDS:
                break
            with contextlib.suppress(httpx.HTTPError):
                status = httpx.get(f"{url}/health", timeout=5).json()["status"]
            if status == "failed":
                break
            time.sleep(0.5)
        if status != "ready":
            pytest.fail(
                f"worker not ready (status {status}):\n{(workdir / 'worker.log').read_text()}"
            )
        print(f"installed worker ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
        assert "building random" not in (workdir / "worker.log").read_text()  # the cache's
        yield url
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()


def test_installed_worker_serves_random_weights(installed_worker: str) -> None:
    response = httpx.post(f"{installed_worker}/synthesize", data=FORM, timeout=300)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("audio/wav")
    audio, rate = soundfile.read(io.BytesIO(response.content))
    assert rate == 24_000 and audio.size > 0
