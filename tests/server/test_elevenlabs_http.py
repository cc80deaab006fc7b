"""ElevenLabs' HTTP text-to-speech, as LiveKit's and pipecat's non-streamed paths call it."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import pytest
import soundfile

from tests.fakes import FakeEngine
from tests.live_server import LiveServer

SECONDS = 1.0  # the fake engine's 5 chunks of 0.2 s


def _post(server: LiveServer, path: str, query: str = "", **body: object) -> httpx.Response:
    url = f"{server.url}/v1/text-to-speech/{path}" + (f"?{query}" if query else "")
    return httpx.post(url, json={"text": "Hello there.", **body}, timeout=30)


@pytest.mark.parametrize(("rate"), [8000, 16000, 22050, 24000, 44100, 48000])
def test_pcm_formats_have_the_asked_rate_and_length(server: LiveServer, rate: int) -> None:
    response = _post(server, "default/stream", f"output_format=pcm_{rate}")
    assert response.status_code == 200 and response.headers["content-type"] == "audio/pcm"
    assert abs(len(response.content) // 2 - int(SECONDS * rate)) <= 2


def test_mp3_stream_decodes_at_its_rate(server: LiveServer) -> None:
    response = _post(server, "default/stream", "output_format=mp3_22050_32")
    assert response.headers["content-type"] == "audio/mpeg"
    audio, rate = soundfile.read(io.BytesIO(response.content))
    assert rate == 22050 and abs(audio.shape[0] / rate - SECONDS) < 0.1


def test_ulaw_is_8_khz_one_byte_a_sample(server: LiveServer) -> None:
    response = _post(server, "default", "output_format=ulaw_8000")
    assert response.headers["content-type"] == "audio/PCMU"
    assert abs(len(response.content) - int(SECONDS * 8000)) <= 2


def test_default_format_is_mp3_44100_128(server: LiveServer) -> None:
    response = _post(server, "default")
    assert response.headers["content-type"] == "audio/mpeg"
    _, rate = soundfile.read(io.BytesIO(response.content))
    assert rate == 44100


def test_with_timestamps_sends_ndjson_audio_without_alignment(server: LiveServer) -> None:
    response = _post(server, "default/stream/with-timestamps", "output_format=pcm_16000")
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines and all(line["alignment"] is None for line in lines)
    pcm = b"".join(base64.b64decode(line["audio_base64"]) for line in lines)
    assert abs(len(pcm) // 2 - 16000) <= 2


def test_with_timestamps_sends_one_object_with_all_audio_and_no_alignment(
    server: LiveServer,
) -> None:
    response = _post(server, "default/with-timestamps", "output_format=pcm_16000")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["alignment"] is None and body["normalized_alignment"] is None
    assert abs(len(base64.b64decode(body["audio_base64"])) // 2 - 16000) <= 2


def test_with_timestamps_engine_failure_is_a_500_in_elevenlabs_shape(
    server: LiveServer, fake: FakeEngine
) -> None:
    fake.fail_after = 2
    response = _post(server, "default/with-timestamps")
    assert response.status_code == 500
    detail = response.json()["detail"]
    assert detail["status"] == "generation_failed" and "fake engine failure" in detail["message"]
    fake.fail_after = None
    assert _post(server, "default/with-timestamps").status_code == 200


def test_body_settings_and_seed_reach_the_request(server: LiveServer, fake: FakeEngine) -> None:
    response = _post(
        server,
        "alloy/stream",
        "output_format=pcm_24000",
        model_id="eleven_flash_v2_5",
        seed=12,
        language_code="en",
        voice_settings={"style": 0.0, "stability": 0.4, "cfg_weight": 0.3},
    )
    assert response.status_code == 200
    request = fake.requests[-1]
    assert request.text == "Hello there." and request.seed == 12
    assert (request.params.exaggeration, request.params.cfg_weight) == (0.5, 0.3)
    pcm = np.frombuffer(response.content, "<i2")
    assert pcm.size == 24000 and np.abs(pcm).max() > 1000


@pytest.mark.parametrize(
    ("query", "body", "status", "code"),
    [
        ("output_format=wav_8000", {}, 422, "invalid_output_format"),
        ("", {"text": ""}, 422, "invalid_text"),
        ("", {"voice_settings": {"stability": 2}}, 422, "invalid_stability"),
        ("", {"voice_settings": "calm"}, 422, "invalid_voice_settings"),
        ("", {"language_code": "sw"}, 422, "invalid_language_code"),
        ("", {"seed": "x"}, 422, "invalid_seed"),
    ],
)
@pytest.mark.parametrize("path", ["default", "default/with-timestamps"])
def test_errors_use_elevenlabs_shape(
    server: LiveServer, query: str, body: dict[str, object], status: int, code: str, path: str
) -> None:
    response = _post(server, path, query, **body)
    assert response.status_code == status
    detail = response.json()["detail"]
    assert detail["status"] == code and detail["message"]


def test_unknown_voice_is_an_error_naming_the_voice(server: LiveServer) -> None:
    response = _post(server, "21m00Tcm4TlvDq8ikWAM")
    assert response.status_code == 422
    assert response.json()["detail"]["status"] == "invalid_voice"


def test_invalid_json_is_a_400(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/v1/text-to-speech/default",
        content=b"{nope",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400 and "JSON" in response.json()["detail"]["message"]
