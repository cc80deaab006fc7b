"""The voice library over HTTP: upload, list, use, delete, survive a restart."""

from __future__ import annotations

import httpx

from server.config import ServerConfig
from tests.audio import wav_bytes
from tests.fakes import FakeEngine
from tests.live_server import LiveServer
from tests.server.conftest import serving, wait_ready
from tests.sse import iter_events


def _upload(url: str, name: str, audio: bytes) -> httpx.Response:
    return httpx.post(
        f"{url}/voices",
        data={"name": name},
        files={"audio": ("v.wav", audio, "audio/wav")},
        timeout=60,  # the first decode in a process imports librosa
    )


def test_voice_lifecycle_and_use(server: LiveServer, fake: FakeEngine) -> None:
    created = _upload(server.url, "Narrator One", wav_bytes(6.0))
    assert created.status_code == 201
    voice = created.json()
    assert voice["name"] == "Narrator One" and voice["id"].startswith("narrator-one-")
    listed = httpx.get(f"{server.url}/voices").json()["voices"]
    assert [v["id"] for v in listed] == [voice["id"]]

    with httpx.stream(
        "POST", f"{server.url}/synthesize-stream", data={"text": "Hi.", "voice": voice["id"]}
    ) as response:
        assert list(iter_events(response))[-1].event == "done"
    used = fake.requests[-1].voice
    assert used is not None and used.key == voice["prompt_sha256"]

    assert httpx.delete(f"{server.url}/voices/{voice['id']}").status_code == 204
    assert httpx.get(f"{server.url}/voices").json()["voices"] == []
    assert httpx.delete(f"{server.url}/voices/{voice['id']}").status_code == 404


def test_bad_uploads_are_clear_errors(server: LiveServer) -> None:
    short = _upload(server.url, "Short", wav_bytes(1.0))
    assert short.status_code == 422 and short.json()["field"] == "audio"  # the file's field
    nameless = _upload(server.url, "  ", wav_bytes(6.0))
    assert nameless.status_code == 422 and nameless.json()["field"] == "name"
    no_file = httpx.post(f"{server.url}/voices", data={"name": "x"})
    assert no_file.status_code == 422 and no_file.json()["field"] == "audio"


def test_ids_cannot_escape_the_voices_dir(server: LiveServer) -> None:
    for bad in ("..%2F..%2Fetc", "UPPER", "a" * 65, ".hidden"):
        assert httpx.delete(f"{server.url}/voices/{bad}").status_code == 404


def test_voices_survive_a_restart(base_config: ServerConfig) -> None:
    with serving(base_config, FakeEngine()) as first:
        wait_ready(first.url)
        voice_id = _upload(first.url, "Keeper", wav_bytes(6.0)).json()["id"]
    with serving(base_config, FakeEngine()) as second:
        wait_ready(second.url)
        assert [v["id"] for v in httpx.get(f"{second.url}/voices").json()["voices"]] == [voice_id]
        with httpx.stream(
            "POST", f"{second.url}/synthesize-stream", data={"text": "Hi.", "voice": voice_id}
        ) as response:
            assert list(iter_events(response))[-1].event == "done"
