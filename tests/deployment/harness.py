"""`start_streaming_servers.sh` as a process under test, serving fake workers
(`--worker-module tests.fake_worker`: a start takes about a second of imports, not a model)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.balancer.processes import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "start_streaming_servers.sh"
UP_TIMEOUT_S = 90.0
# The balancer notices a worker's change of health within this (its default is 2 s).
HEALTH_INTERVAL = "0.2"


@dataclass
class Deployment:
    process: subprocess.Popen[str]
    balancer: str
    workers: list[str]
    output: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def wait_output(self, pattern: str, timeout: float = 30.0, count: int = 1) -> None:
        """Until `pattern` (a regular expression) occurs `count` times in the output."""
        wait_for(
            lambda: len(re.findall(pattern, self.text)) >= count or self.process.poll() is not None,
            timeout,
            f"{pattern!r} in the output",
        )
        assert len(re.findall(pattern, self.text)) >= count, self.text

    def pid(self, name: str) -> int:
        """The pid of the latest process started as `name` ("cpu0 worker")."""
        found = re.findall(rf"started the {name} on \S+ \(pid (\d+)", self.text)
        assert found, self.text
        return int(found[-1])

    def in_rotation(self) -> list[str]:
        stats = httpx.get(f"{self.balancer}/stats?format=json", timeout=5).json()
        return [w["url"] for w in stats["workers"] if w["in_rotation"]]

    def survivors(self) -> list[int]:
        """Processes left in the script's process group (its children inherit it)."""
        found = subprocess.run(
            ["pgrep", "-g", str(self.process.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in found.stdout.split()]


@contextmanager
def deployment(
    work: Path,
    *flags: str,
    workers: int = 2,
    worker_flags: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[Deployment]:
    """The script with `workers` fake workers; up (or exited) when this yields. `env`: more
    environment for the script (and so its children)."""
    worker_port, port = free_port(), free_port()
    while port in range(worker_port, worker_port + workers):
        port = free_port()
    argv = [str(SCRIPT), "--worker-module", "tests.fake_worker", "--workers", str(workers)]
    argv += ["--worker-port", str(worker_port), "--port", str(port), "--host", "127.0.0.1"]
    argv += ["--log-dir", str(work / "logs"), "--voices-dir", str(work / "voices"), *flags]
    argv += ["--", *worker_flags]
    process = subprocess.Popen(
        argv,
        cwd=work,  # the script finds the repository by its own path
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "BALANCER_HEALTH_INTERVAL": HEALTH_INTERVAL, **(env or {})},
        start_new_session=True,  # its own process group, to find (and clean up) every child
    )
    urls = [f"http://127.0.0.1:{worker_port + i}" for i in range(workers)]
    live = Deployment(process, f"http://127.0.0.1:{port}", urls)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            live.output.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        wait_for(
            lambda: "Chatterbox streaming is up" in live.text or process.poll() is not None,
            UP_TIMEOUT_S,
            "the deployment to come up",
        )
        yield live
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid in live.survivors():
            os.kill(pid, signal.SIGKILL)
