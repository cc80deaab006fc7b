"""`start_streaming_servers.sh` on this CPU machine: one real worker serving the random
full-size checkpoint, and the balancer. The deployment is also what the real-worker tests run
against (one real worker process: the machine has two cores). On a machine with GPUs (the GPU
check, scripts/gpu_check.sh) the script puts its worker on the first one instead.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from deployment.plan import detect_gpus
from tests.balancer.clients import STREAM_LIMITS, stream_events
from tests.balancer.conftest import stream
from tests.balancer.processes import free_port, wait_for

pytestmark = pytest.mark.model
REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "start_streaming_servers.sh"
READY_TIMEOUT_S = 240
DISCONNECTED = 'tts_requests_total{endpoint="synthesize-stream",outcome="disconnected"}'
# Where the script puts its one worker (deployment/plan.py): the first GPU when there is one.
WORKER_NAME, WORKER_DEVICE = ("gpu0", "cuda:0") if detect_gpus() else ("cpu0", "cpu")


@dataclass
class Deployment:
    process: subprocess.Popen[str]
    balancer: str
    worker: str
    logs: Path
    output: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def survivors(self) -> list[int]:
        """Processes left in the script's process group (its children inherit it)."""
        found = subprocess.run(
            ["pgrep", "-g", str(self.process.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in found.stdout.split()]


@pytest.fixture(scope="module")
def deployment(turbo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    # turbo_dir: the random checkpoint is built (once) into the cache the script uses.
    work = tmp_path_factory.mktemp("deployment")
    worker_port, port = free_port(), free_port()
    process = subprocess.Popen(
        [
            str(SCRIPT),
            "--random-weights",
            "--workers",  # one, also where there are several GPUs
            "1",
            "--worker-port",
            str(worker_port),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--log-dir",
            str(work / "logs"),
            "--voices-dir",
            str(work / "voices"),
            "--ready-timeout",
            str(READY_TIMEOUT_S),
        ],
        cwd=work,  # the script finds the repository by its own path
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, to find (and clean up) every child
    )
    live = Deployment(
        process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{worker_port}", work / "logs"
    )
    up = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            live.output.append(line)
            if "Chatterbox streaming is up" in line:
                up.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: up.is_set() or process.poll() is not None, READY_TIMEOUT_S, "startup")
        assert up.is_set(), f"the script exited with {process.returncode}:\n{live.text}"
        wait_for(lambda: "Ctrl-C stops everything" in live.text, 10, "the startup banner")
        yield live
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid in live.survivors():
            os.kill(pid, signal.SIGKILL)


def test_the_script_brings_up_a_healthy_deployment(deployment: Deployment) -> None:
    health = httpx.get(f"{deployment.balancer}/health").json()
    assert health["status"] == "ok" and health["ready_workers"] == health["workers"] == 1
    worker = httpx.get(f"{deployment.balancer}/stats").json()["workers"][0]
    assert worker["url"] == deployment.worker and worker["health"] == "ready"
    assert worker["worker_reported"]["device"] == WORKER_DEVICE
    assert (deployment.logs / f"{WORKER_NAME}_streaming_server.log").is_file()
    assert (deployment.logs / "loadbalancer_streaming.log").is_file()
    assert "RANDOM WEIGHTS" in deployment.text and "NOISE" in deployment.text
    assert f"balancer   {deployment.balancer}" in deployment.text


def test_a_real_worker_streams_through_the_balancer(deployment: Deployment) -> None:
    form = {"text": "Hello there.", "max_new_tokens": "20", "seed": "3"}
    response, events = stream(deployment.balancer, **form)
    assert response.status_code == 200
    assert response.headers["x-upstream-worker"] == deployment.worker
    chunks = [e.json() for e in events if e.event == "audio_chunk"]
    assert [c["chunk_id"] for c in chunks] == list(range(1, len(chunks) + 1))
    assert events[-1].event == "done" and events[-1].json()["total_chunks"] == len(chunks)
    stats = httpx.get(f"{deployment.balancer}/stats").json()
    assert stats["workers"][0]["ttfc_samples"] == 1 and stats["totals"]["completed"] == 1


def test_hanging_up_stops_the_real_worker(deployment: Deployment) -> None:
    before = _metric(deployment.worker, DISCONNECTED)

    async def hang_up_after_first_chunk() -> list[int]:
        async with httpx.AsyncClient(timeout=120, limits=STREAM_LIMITS) as client:
            # A long request: left alone, it would run for a minute or more on this CPU.
            form = {"text": "A long sentence to keep the model busy for a while.", "seed": "1"}
            form["max_new_tokens"] = "400"
            result = await stream_events(client, deployment.balancer, form, hang_up_after=1)
            return result.chunk_ids

    assert asyncio.run(hang_up_after_first_chunk()) == [1]
    wait_for(lambda: _metric(deployment.worker, DISCONNECTED) == before + 1, 30, "the worker")
    health = httpx.get(f"{deployment.worker}/health").json()
    assert health["active_streams"] == 0 and health["queued"] == 0
    stats = httpx.get(f"{deployment.balancer}/stats").json()
    assert stats["balancer"]["in_flight"] == 0 and stats["totals"]["client_disconnects"] == 1


def test_sigterm_stops_every_child(deployment: Deployment) -> None:
    assert len(deployment.survivors()) >= 3  # the script, the worker, the balancer
    deployment.process.send_signal(signal.SIGTERM)
    assert deployment.process.wait(timeout=60) == 143
    wait_for(lambda: deployment.survivors() == [], 10, "every child to exit")
    assert "stopped." in deployment.text
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{deployment.balancer}/health")


def _metric(url: str, prefix: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
