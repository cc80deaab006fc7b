"""`--voice-broadcast`: voice changes reach every worker when they do not share a directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.audio import wav_bytes
from tests.balancer.processes import FakeWorker, fake_workers, live_balancer
from tests.balancer.upstreams import answering
from tests.live_server import LiveServer


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory, logs: Path) -> Iterator[list[FakeWorker]]:
    """Two workers as if on two hosts: each with a voices directory of its own."""
    specs = [("--voices-dir", str(tmp_path_factory.mktemp(f"host{i}-voices"))) for i in (1, 2)]
    with fake_workers(*specs, log_dir=logs) as workers:
        yield workers


def voice_ids(worker: FakeWorker) -> list[str]:
    return [v["id"] for v in httpx.get(f"{worker.url}/voices").json()["voices"]]


def upload(url: str, name: str, audio: bytes) -> httpx.Response:
    files = {"audio": ("v.wav", audio, "audio/wav")}
    return httpx.post(f"{url}/voices", data={"name": name}, files=files, timeout=30)


def test_voice_changes_reach_every_worker(hosts: list[FakeWorker]) -> None:
    with live_balancer([w.url for w in hosts], voice_broadcast=True) as lb:
        created = upload(lb.url, "Everywhere", wav_bytes(6.0))
        assert created.status_code == 201 and created.headers["x-voice-broadcast"] == "2/2"
        voice_id = created.json()["id"]
        assert all(voice_id in voice_ids(w) for w in hosts)
        deleted = httpx.delete(f"{lb.url}/voices/{voice_id}")
        assert deleted.status_code == 204
        assert all(voice_id not in voice_ids(w) for w in hosts)
        assert httpx.delete(f"{lb.url}/voices/{voice_id}").status_code == 404
        assert lb.stats()["balancer"]["in_flight"] == 0


def test_without_broadcast_only_one_worker_gets_the_voice(hosts: list[FakeWorker]) -> None:
    with live_balancer([w.url for w in hosts]) as lb:
        created = upload(lb.url, "Somewhere", wav_bytes(6.5))
        assert created.status_code == 201
        voice_id = created.json()["id"]
        assert sum(voice_id in voice_ids(w) for w in hosts) == 1
        for worker in hosts:  # clean up behind the balancer's back
            httpx.delete(f"{worker.url}/voices/{voice_id}")


def test_a_bad_upload_is_refused_like_a_single_worker_would(hosts: list[FakeWorker]) -> None:
    with live_balancer([w.url for w in hosts], voice_broadcast=True) as lb:
        refused = upload(lb.url, "Short", wav_bytes(1.0))
        assert refused.status_code == 422 and "audio" in refused.json()["error"]


def test_a_partial_broadcast_is_reported(hosts: list[FakeWorker]) -> None:
    with (
        LiveServer(answering(500, b'{"error": "disk full"}')) as broken,
        live_balancer([hosts[0].url, broken.url], voice_broadcast=True) as lb,
    ):
        response = upload(lb.url, "Partial", wav_bytes(7.0))
        assert response.status_code == 502
        body = response.json()
        assert "1 of 2" in body["error"]
        assert {w["worker"]: w["status"] for w in body["workers"]} == {
            hosts[0].url: 201,
            broken.url: 500,
        }
        voice_id = body["voice"]["id"]
        assert voice_id in voice_ids(hosts[0])
        httpx.delete(f"{hosts[0].url}/voices/{voice_id}")
