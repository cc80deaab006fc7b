"""Input meant to hurt: clients too slow to send their request, audio prompts that would
decode to hours, voice names that look like paths, text with nothing to say. Each ends in a
clear 4xx naming the field (or a closed connection), and the worker goes on serving.

A real uvicorn worker over the fake engine, with the HTTP protocol `main` serves with
(edge/deadlines.py), its deadlines shortened.
"""

from __future__ import annotations

import io
import json
import logging
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
from websockets.sync.client import connect

from edge.deadlines import DeadlineProtocol
from server.app import create_app
from server.config import ServerConfig
from tests.audio import wav_bytes
from tests.fakes import FakeEngine
from tests.live_server import LiveServer
from tests.raw_http import exchange
from tests.server.conftest import wait_ready

HEADERS_S = 1.0
BODY_S = 1.5
SLACK_S = 1.0  # timers on a busy two-core machine


class QuickDeadlines(DeadlineProtocol):
    header_timeout = HEADERS_S
    body_timeout = BODY_S


@pytest.fixture(scope="module")
def voices_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile") / "voices"  # alone in its parent


@pytest.fixture(scope="module")
def worker(voices_dir: Path) -> Iterator[LiveServer]:
    config = ServerConfig(voices_dir=voices_dir, max_streams=1, max_queue=4, max_batch=1)
    engine = FakeEngine(chunks=2, delay=0.005)
    with LiveServer(create_app(config, lambda: engine), http=QuickDeadlines) as live:
        wait_ready(live.url)
        yield live


def serves_normally(url: str) -> None:
    response = httpx.post(f"{url}/synthesize", data={"text": "Still here."}, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"


def errors_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# --- slow clients -------------------------------------------------------------------------


def test_a_silent_connection_is_closed(worker: LiveServer) -> None:
    reply = exchange(worker.url, timeout=HEADERS_S + 5)
    assert reply.closed and reply.data == b""
    assert HEADERS_S - 0.1 < reply.seconds < HEADERS_S + SLACK_S
    serves_normally(worker.url)


def test_headers_a_byte_at_a_time(worker: LiveServer) -> None:
    headers = b"POST /synthesize HTTP/1.1\r\nHost: worker\r\nX-Padding: " + b"p" * 100
    reply = exchange(worker.url, drip=headers, drip_interval=0.05, timeout=HEADERS_S + 5)
    assert reply.closed and reply.statuses == [408]
    assert reply.json()["field"] == "headers"
    assert reply.seconds < HEADERS_S + SLACK_S
    serves_normally(worker.url)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/synthesize", "application/x-www-form-urlencoded"),
        ("/v1/audio/speech", "application/json"),
    ],
)
def test_a_body_a_byte_at_a_time(
    worker: LiveServer, caplog: pytest.LogCaptureFixture, path: str, content_type: str
) -> None:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: worker\r\nContent-Type: {content_type}\r\n"
        "Content-Length: 1000\r\n\r\n"
    ).encode()
    reply = exchange(worker.url, head, drip=b" " * 1000, drip_interval=0.05, timeout=BODY_S + 5)
    assert reply.closed and reply.statuses == [408]
    assert reply.json()["field"] == "body"
    assert BODY_S - 0.1 < reply.seconds < BODY_S + SLACK_S
    serves_normally(worker.url)
    assert errors_in(caplog) == []  # a client cut off is no error of ours


def test_a_web_socket_outlives_the_deadlines(worker: LiveServer) -> None:
    with connect(worker.url.replace("http://", "ws://") + "/ws/tts", open_timeout=10) as socket:
        time.sleep(HEADERS_S + BODY_S + 0.2)
        socket.send(json.dumps({"text": "Hello there."}))
        while True:
            message = socket.recv(timeout=10)
            if isinstance(message, str) and json.loads(message)["type"] == "complete":
                break


# --- audio prompts ------------------------------------------------------------------------


def wav_with_header(rate: int, payload: bytes, channels: int = 1, data_size: int = -1) -> bytes:
    """A 16-bit PCM WAV file whose header says what it is told to, whatever follows."""
    size = len(payload) if data_size < 0 else data_size
    block = channels * 2
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, 16)
    riff_size = min(4 + 8 + len(fmt) + 8 + size, 0xFFFFFFFF)
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVEfmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", size)
        + payload
    )


def hour_of_silence_flac() -> bytes:
    """Half a megabyte that decodes to an hour at 48 kHz (690 MB of float32)."""
    buffer = io.BytesIO()
    with soundfile.SoundFile(
        buffer, "w", samplerate=48000, channels=1, format="FLAC", subtype="PCM_16"
    ) as file:
        block = np.zeros(48000 * 60, dtype=np.float32)
        for _ in range(60):
            file.write(block)
    return buffer.getvalue()


SIX_SECONDS = (0.3 * np.sin(np.arange(6 * 24000) / 24000 * 2 * np.pi * 180) * 32767).astype("<i2")

HOSTILE_PROMPTS = {
    "a 10 MHz sample rate": (wav_with_header(10_000_000, SIX_SECONDS.tobytes()), "sample rate"),
    "a 1 Hz sample rate": (wav_with_header(1, SIX_SECONDS.tobytes()), "sample rate"),
    "300 channels": (wav_with_header(24000, SIX_SECONDS.tobytes(), channels=300), "channels"),
    "an hour of compressed silence": (hour_of_silence_flac(), "at most 60 s"),
}


@pytest.mark.parametrize(
    ("audio", "complaint"), HOSTILE_PROMPTS.values(), ids=HOSTILE_PROMPTS.keys()
)
def test_prompts_that_would_decode_to_too_much_are_refused_at_once(
    worker: LiveServer, audio: bytes, complaint: str
) -> None:
    started = time.monotonic()
    response = httpx.post(
        f"{worker.url}/synthesize",
        data={"text": "Hi."},
        files={"audio_prompt": ("prompt.wav", audio, "audio/wav")},
        timeout=60,
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "audio_prompt" and complaint in response.json()["error"]
    assert time.monotonic() - started < 5  # nothing decoded beyond the limit
    uploaded = httpx.post(
        f"{worker.url}/voices",
        data={"name": "bomb"},
        files={"audio": ("prompt.wav", audio, "audio/wav")},
        timeout=60,
    )
    assert uploaded.status_code == 422 and uploaded.json()["field"] == "audio"
    serves_normally(worker.url)


def test_a_header_claiming_4_gb_is_read_for_what_is_there(worker: LiveServer) -> None:
    audio = wav_with_header(24000, SIX_SECONDS.tobytes(), data_size=0xFFFFFFF0)
    response = httpx.post(
        f"{worker.url}/synthesize",
        data={"text": "Hi."},
        files={"audio_prompt": ("prompt.wav", audio, "audio/wav")},
        timeout=60,
    )
    assert response.status_code == 200  # six seconds of real audio: a usable prompt


# --- voice names --------------------------------------------------------------------------


def upload(url: str, name: str) -> httpx.Response:
    return httpx.post(
        f"{url}/voices",
        data={"name": name},
        files={"audio": ("v.wav", wav_bytes(6.0), "audio/wav")},
        timeout=60,
    )


def synthesize_with(url: str, voice: str) -> httpx.Response:
    # Multipart: an urlencoded field over the form's part limit (4 bytes a character of
    # --max-text-chars) is refused whole, as a form that cannot be read (400).
    form = {"text": "Hi.", "voice": voice}
    files = {"unused": ("unused.txt", b"", "text/plain")}
    return httpx.post(f"{url}/synthesize", data=form, files=files, timeout=30)


COMBINING = "a" + "\u0301" * 5000  # 10 kB of combining acute accents on one letter


@pytest.mark.parametrize("name", ["../../etc/passwd", "..", "/", "a/b\\c", "C:\\voices\\x"])
def test_names_that_look_like_paths_stay_names(
    worker: LiveServer, voices_dir: Path, name: str
) -> None:
    created = upload(worker.url, name)
    assert created.status_code == 201, created.text
    voice = created.json()
    assert voice["name"] == name
    assert (voices_dir / voice["id"]).is_dir()  # inside the library, named by its id
    assert [p.name for p in voices_dir.parent.iterdir()] == [voices_dir.name]
    assert synthesize_with(worker.url, name).status_code == 200  # found by its name
    assert httpx.delete(f"{worker.url}/voices/{voice['id']}").status_code == 204


@pytest.mark.parametrize(
    ("name", "complaint"),
    [
        ("nul\u0000byte", "control characters"),
        ("new\nline", "control characters"),
        (COMBINING, "at most 64"),
        ("\u200b" * 65, "at most 64"),
        ("\u200b\u200f\u0301", "nothing visible"),
    ],
    ids=["nul", "newline", "10-kB-of-combining-marks", "65-zero-width-spaces", "invisible"],
)
def test_names_no_one_can_read_are_refused(worker: LiveServer, name: str, complaint: str) -> None:
    refused = upload(worker.url, name)
    assert refused.status_code == 422 and refused.json()["field"] == "name"
    assert complaint in refused.json()["error"]
    assert httpx.get(f"{worker.url}/voices").json()["voices"] == []


@pytest.mark.parametrize(
    "voice", ["../../etc/passwd", "..", "nul\u0000byte", COMBINING, "%2e%2e%2f"]
)
def test_looking_up_a_hostile_name_is_an_unknown_voice(worker: LiveServer, voice: str) -> None:
    response = synthesize_with(worker.url, voice)
    assert response.status_code == 422 and response.json()["field"] == "voice"
    assert len(response.json()["error"]) < 300  # the name is quoted, not echoed whole
    serves_normally(worker.url)


@pytest.mark.parametrize(
    "path", ["..%2F..%2Fetc", "%2e%2e", "nul%00byte", "a" + "%CC%81" * 1000, "x/../../etc"]
)
def test_deleting_a_hostile_id_is_not_found(worker: LiveServer, path: str) -> None:
    response = httpx.delete(f"{worker.url}/voices/{path}")
    assert response.status_code == 404 and len(response.json()["error"]) < 300
    serves_normally(worker.url)


# --- text ---------------------------------------------------------------------------------

NOTHING_TO_SAY = {
    "emoji": "\U0001f600\U0001f389 \U0001f44d\U0001f3fd",
    "zero-width": "\u200b\u200c\u200d\u2060\ufeff",
    "direction-marks": "\u200f\u202e\u2067\u2069",
    "punctuation": "... !? --",
}
SPEAKABLE = {
    "hebrew": "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
    "arabic": "\u0645\u0631\u062d\u0628\u0627",
    "right-to-left-override": "\u202eHello there.",
    "emoji-and-words": "Party time \U0001f389",
    "digits": "42",
}


@pytest.mark.parametrize("text", NOTHING_TO_SAY.values(), ids=NOTHING_TO_SAY.keys())
def test_text_with_nothing_to_say_is_refused(worker: LiveServer, text: str) -> None:
    ours = httpx.post(f"{worker.url}/synthesize", data={"text": text}, timeout=30)
    assert ours.status_code == 422 and ours.json()["field"] == "text"
    openai = httpx.post(
        f"{worker.url}/v1/audio/speech",
        json={"model": "tts-1", "input": text, "voice": "alloy", "response_format": "wav"},
        timeout=30,
    )
    assert openai.status_code == 400 and openai.json()["error"]["param"] == "input"


@pytest.mark.parametrize("text", SPEAKABLE.values(), ids=SPEAKABLE.keys())
def test_text_in_any_script_is_spoken(worker: LiveServer, text: str) -> None:
    response = httpx.post(f"{worker.url}/synthesize", data={"text": text}, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
