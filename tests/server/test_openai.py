"""`POST /v1/audio/speech`, as OpenAI clients call it."""

from __future__ import annotations

import base64
import io
import json
import struct

import httpx
import pytest
import soundfile

from tests.audio import wav_bytes
from tests.fakes import FakeEngine
from tests.live_server import LiveServer
from tests.sse import iter_events

CHUNK_BYTES = 2 * int(0.2 * 24000)


def _speech(server: LiveServer, **body: object) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/audio/speech", json={"model": "tts-1", **body})


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus"])
def test_file_formats_decode(server: LiveServer, fmt: str) -> None:
    response = _speech(server, input="Hello.", voice="alloy", response_format=fmt)
    assert response.status_code == 200
    audio, rate = soundfile.read(io.BytesIO(response.content))
    assert rate in (24000, 48000) and audio.shape[0] > 0


def test_pcm_streams_raw_samples(server: LiveServer) -> None:
    with httpx.stream(
        "POST",
        f"{server.url}/v1/audio/speech",
        json={"input": "Hello.", "voice": "nova", "response_format": "pcm"},
    ) as response:
        assert response.headers["content-type"] == "audio/pcm"
        body = b"".join(response.iter_bytes())
    assert len(body) == 5 * CHUNK_BYTES


def test_streamed_wav_has_an_open_ended_header(server: LiveServer) -> None:
    response = _speech(
        server, input="Hello.", voice="echo", response_format="wav", stream_format="audio"
    )
    header, samples = response.content[:44], response.content[44:]
    assert header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt " and header[36:40] == b"data"
    # Sizes unknown while streaming: both say "to the end of the stream".
    riff_size, data_size = (
        struct.unpack("<I", header[4:8])[0],
        struct.unpack("<I", header[40:44])[0],
    )
    assert riff_size == data_size == 0xFFFFFFFF
    channels, rate, byte_rate, align, bits = struct.unpack("<HIIHH", header[22:36])
    assert (channels, rate, byte_rate, align, bits) == (1, 24000, 48000, 2, 16)
    assert len(samples) == 5 * CHUNK_BYTES


def test_sse_format_sends_deltas_and_done(server: LiveServer) -> None:
    with httpx.stream(
        "POST",
        f"{server.url}/v1/audio/speech",
        json={
            "input": "Hello.",
            "voice": "alloy",
            "response_format": "pcm",
            "stream_format": "sse",
        },
    ) as response:
        events = [json.loads(e.data) for e in iter_events(response)]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) == 5
    assert all(len(base64.b64decode(d["audio"])) == CHUNK_BYTES for d in deltas)
    assert events[-1]["type"] == "speech.audio.done" and "usage" in events[-1]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"voice": "alloy"}, "input"),
        ({"input": "x", "voice": "nobody-like-this"}, "voice"),
        ({"input": "x", "response_format": "aac"}, "response_format"),
        ({"input": "x", "response_format": "ogg"}, "response_format"),
        ({"input": "x", "speed": 9}, "speed"),
        ({"input": "x", "stream_format": "chunks"}, "stream_format"),
        ({"input": "x" * 5000}, "input"),
    ],
)
def test_errors_use_openai_error_shape(
    server: LiveServer, body: dict[str, object], param: str
) -> None:
    response = _speech(server, **body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert error["message"]


def test_invalid_json_is_a_400(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/v1/audio/speech",
        content=b"{nope",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]


def test_openai_voice_names_map_to_saved_voices_of_that_name(
    server: LiveServer, fake: FakeEngine
) -> None:
    created = httpx.post(
        f"{server.url}/voices",
        data={"name": "Nova"},
        files={"audio": ("v.wav", wav_bytes(6.0), "audio/wav")},
        timeout=60,  # the first decode in a process imports librosa
    ).json()
    assert _speech(server, input="Hi.", voice="nova", response_format="wav").status_code == 200
    mapped = fake.requests[-1].voice
    assert mapped is not None and mapped.key == created["prompt_sha256"]
    assert _speech(server, input="Hi.", voice="alloy", response_format="wav").status_code == 200
    assert fake.requests[-1].voice is None  # unmapped names: the built-in voice


def test_seed_extension_is_validated_and_passed_on(server: LiveServer, fake: FakeEngine) -> None:
    assert _speech(server, input="Hi.", response_format="wav", seed=42).status_code == 200
    assert fake.requests[-1].seed == 42
    bad = _speech(server, input="Hi.", seed=-1)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "seed"


def test_engine_failure_of_a_whole_file_is_a_500_in_openai_shape(
    server: LiveServer, fake: FakeEngine
) -> None:
    fake.fail_after = 2
    response = _speech(server, input="Hi.", response_format="mp3")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "server_error" and "fake engine failure" in error["message"]
    fake.fail_after = None
    assert _speech(server, input="Hi.", response_format="mp3").status_code == 200


def test_engine_failure_mid_sse_is_an_openai_error_event(
    server: LiveServer, fake: FakeEngine
) -> None:
    fake.fail_after = 2
    body = {"input": "Hi.", "response_format": "pcm", "stream_format": "sse"}
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=body) as response:
        events = [e.json() for e in iter_events(response)]
    assert [e["type"] for e in events] == ["speech.audio.delta"] * 2 + ["error"]
    assert events[-1]["error"]["type"] == "server_error"
    assert "fake engine failure" in events[-1]["error"]["message"]


def test_engine_failure_mid_audio_stream_aborts_the_body(
    server: LiveServer, fake: FakeEngine
) -> None:
    # Raw audio has no way to carry an error once it started: the connection is cut short,
    # so the client sees an incomplete body instead of a clean end.
    fake.fail_after = 2
    body = {"input": "Hi.", "response_format": "pcm"}
    received = 0
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", f"{server.url}/v1/audio/speech", json=body) as response,
    ):
        for piece in response.iter_bytes():
            received += len(piece)
    assert received == 2 * CHUNK_BYTES


def test_metrics_record_every_openai_request(server: LiveServer) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    _speech(server, input="Hi.", response_format="pcm")
    _speech(server, input="Hi.", response_format="wav", stream_format="sse")
    text = httpx.get(f"{server.url}/metrics").text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]

    def value(name: str, **labels: str) -> float:
        return sum(
            s.value for s in samples if s.name == name and labels.items() <= s.labels.items()
        )

    assert value("tts_requests_total", endpoint="v1/audio/speech", outcome="ok") == 2
    assert value("tts_time_to_first_chunk_seconds_count", endpoint="v1/audio/speech") == 2
    assert value("tts_queue_wait_seconds_count") == 2
    assert value("tts_rtf_count") == 2
