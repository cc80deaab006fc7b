"""The voice library over HTTP: upload, list, use, delete, survive a restart."""

from __future__ import annotations

import json
from typing import Any

import httpx

from server.config import ServerConfig
from server.voices import META_FILE
from tests.audio import wav_bytes
from tests.fakes import FakeEngine, multilingual_fake
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


def test_a_voice_records_the_model_it_was_made_for(server: LiveServer, fake: FakeEngine) -> None:
    created = _upload(server.url, "Marker", wav_bytes(6.0)).json()
    assert created["model"] == fake.model_name == "fake"
    [listed] = httpx.get(f"{server.url}/voices").json()["voices"]
    assert listed["model"] == "fake"


def _made_by_another_model(config: ServerConfig, name: str) -> dict[str, Any]:
    with serving(config, FakeEngine(model_name="turbo")) as first:
        wait_ready(first.url)
        created: dict[str, Any] = _upload(first.url, name, wav_bytes(6.0)).json()
    return created


def test_a_voice_made_for_another_model_is_refused_naming_both(
    base_config: ServerConfig,
) -> None:
    voice = _made_by_another_model(base_config, "Elsewhere")
    engine = multilingual_fake()
    with serving(base_config, engine) as second:
        wait_ready(second.url)
        url = second.url
        for chosen in (voice["id"], "Elsewhere"):
            native = httpx.post(f"{url}/synthesize", data={"text": "Hi.", "voice": chosen})
            assert native.status_code == 409 and native.json()["field"] == "voice"
            message = native.json()["error"]
            assert "'Elsewhere'" in message and voice["id"] in message
            assert "turbo" in message and engine.model_name in message
        openai = httpx.post(
            f"{url}/v1/audio/speech", json={"input": "Hi.", "voice": voice["id"]}, timeout=30
        )
        assert openai.status_code == 409 and openai.json()["error"]["param"] == "voice"
        eleven = httpx.post(f"{url}/v1/text-to-speech/{voice['id']}", json={"text": "Hi."})
        assert eleven.status_code == 409
        assert eleven.json()["detail"]["status"] == "voice_model_mismatch"
        # Saved again from its recording with this model: the same id, usable here.
        again = _upload(url, "Elsewhere", wav_bytes(6.0)).json()
        assert (again["id"], again["model"]) == (voice["id"], engine.model_name)
        assert httpx.post(
            f"{url}/synthesize", data={"text": "Hi.", "voice": "Elsewhere"}
        ).is_success
    assert len(engine.requests) == 1


def test_a_name_picks_the_voice_made_for_the_loaded_model(base_config: ServerConfig) -> None:
    with serving(base_config, FakeEngine()) as first:
        wait_ready(first.url)
        mine = _upload(first.url, "Twin", wav_bytes(7.0)).json()
    _made_by_another_model(base_config, "Twin")  # newer, from other audio: another id
    engine = FakeEngine()
    with serving(base_config, engine) as second:
        wait_ready(second.url)
        voices = httpx.get(f"{second.url}/voices").json()["voices"]
        assert [v["model"] for v in voices] == ["fake", "turbo"]
        form = {"text": "Hi.", "voice": "twin"}
        assert httpx.post(f"{second.url}/synthesize", data=form).status_code == 200
    used = engine.requests[-1].voice
    assert used is not None and used.key == mine["prompt_sha256"]


def test_voices_saved_before_models_were_recorded_work_with_any_model(
    base_config: ServerConfig,
) -> None:
    voice = _made_by_another_model(base_config, "Veteran")
    meta = base_config.voices_dir / voice["id"] / META_FILE
    info = json.loads(meta.read_text())
    del info["model"]
    meta.write_text(json.dumps(info))
    engine = multilingual_fake()
    with serving(base_config, engine) as second:
        wait_ready(second.url)
        [listed] = httpx.get(f"{second.url}/voices").json()["voices"]
        assert listed["model"] is None
        form = {"text": "Hi.", "voice": "Veteran"}
        assert httpx.post(f"{second.url}/synthesize", data=form).status_code == 200
    used = engine.requests[-1].voice
    assert used is not None and used.key == voice["prompt_sha256"]
