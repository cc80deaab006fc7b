"""The compatible APIs driven by the official and stock client libraries, pointed at a live
worker (fake engine) with nothing changed but the base URL and the key:

- OpenAI's Python SDK: `audio.speech.create` and `with_streaming_response`, sync and async.
- ElevenLabs' Python SDK: `text_to_speech.convert`, `stream`, `convert_with_timestamps`,
  `stream_with_timestamps` and `convert_realtime` (stream-input; it always connects with
  wss://, so it gets a TLS worker).
- LiveKit Agents' ElevenLabs plugin: `TTS.synthesize()` (HTTP) and `TTS.stream()`
  (multi-stream-input, one socket for every turn).
- pipecat's `ElevenLabsTTSService` (multi-stream-input) and `ElevenLabsHttpTTSService`
  (stream/with-timestamps), in an environment of their own (pipecat_env.py).

The audio each library hands its user must be the engine's, sample for sample after the output
format's resampling, and errors must reach the user the way the library reports them.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import aiohttp
import numpy as np
import openai
import pytest
import soundfile
from elevenlabs import ElevenLabs, VoiceSettings
from elevenlabs.errors import UnprocessableEntityError
from livekit.agents import APIConnectOptions, APIError, APIStatusError
from livekit.agents.tts import SynthesizedAudio
from livekit.plugins import elevenlabs as livekit_elevenlabs

from server.app import create_app
from server.config import ServerConfig
from tests.live_server import LiveServer
from tests.server.conftest import serving, wait_ready
from tests.server.pipecat_env import drive, pipecat_python
from tests.server.stock_clients import (
    LiveTlsServer,
    Pcm,
    RecordingEngine,
    as_pcm,
    self_signed_certificate,
)

API_KEY = "test-key"  # every library insists on one; the worker is open
TEXT = "Hello there, friend."
# LiveKit may end a segment with 10 ms of silence: at most this many samples at our rates.
LIVEKIT_END_MARKER = 240

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


@pytest.fixture
def engine() -> RecordingEngine:
    return RecordingEngine()


def _config(tmp_path: Path) -> ServerConfig:
    """The worker's defaults (the batched runner), but no warm-up: the tests read the engine's
    latest request."""
    return ServerConfig(voices_dir=tmp_path / "voices", warmup=False)


@pytest.fixture
def worker(tmp_path: Path, engine: RecordingEngine) -> Iterator[LiveServer]:
    with serving(_config(tmp_path), engine) as live:
        wait_ready(live.url)
        yield live


def _same(got: Pcm, expected: Pcm, tolerance: int = 0) -> bool:
    if got.shape != expected.shape:
        return False
    return int(np.abs(got.astype(np.int32) - expected.astype(np.int32)).max()) <= tolerance


def _wait_for_cancel(engine: RecordingEngine, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while engine.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.02)


# --- OpenAI's SDK: POST /v1/audio/speech -----------------------------------------------------


def _openai(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY)


@pytest.mark.parametrize("response_format", ["pcm", "wav", "flac"])
def test_openai_speech_create_is_the_engine_audio(
    worker: LiveServer, engine: RecordingEngine, response_format: SpeechFormat
) -> None:
    response = _openai(worker).audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format=response_format
    )
    if response_format == "pcm":
        pcm = as_pcm(response.content)
    else:
        pcm, rate = soundfile.read(io.BytesIO(response.content), dtype="int16")
        assert rate == 24000
    # Whole files are quantised by libsndfile, which rounds a few samples the other way.
    assert _same(pcm, engine.pcm(), tolerance=0 if response_format != "flac" else 1)


def test_openai_streaming_response_hands_over_audio_as_it_is_made(
    worker: LiveServer, engine: RecordingEngine
) -> None:
    engine.delay = 0.1
    streaming = _openai(worker).audio.speech.with_streaming_response
    pieces: list[bytes] = []
    made_at_first_bytes = None
    with streaming.create(
        model="tts-1", voice="nova", input=TEXT, response_format="pcm"
    ) as response:
        for piece in response.iter_bytes():
            if made_at_first_bytes is None:
                made_at_first_bytes = engine.chunks_made()
            pieces.append(piece)
    assert made_at_first_bytes is not None and made_at_first_bytes < engine.chunks
    assert _same(as_pcm(b"".join(pieces)), engine.pcm())


def test_openai_async_client_streams_the_engine_audio(
    worker: LiveServer, engine: RecordingEngine
) -> None:
    async def speak() -> bytes:
        client = openai.AsyncOpenAI(base_url=f"{worker.url}/v1", api_key=API_KEY)
        streaming = client.audio.speech.with_streaming_response
        async with streaming.create(
            model="gpt-4o-mini-tts", voice="coral", input=TEXT, response_format="pcm"
        ) as response:
            return b"".join([piece async for piece in response.iter_bytes()])

    assert _same(as_pcm(asyncio.run(speak())), engine.pcm())


@pytest.mark.parametrize(
    ("voice", "speed", "response_format", "param", "message"),
    [
        ("nobody", 1.0, "pcm", "voice", "unknown voice 'nobody'"),
        ("alloy", 2.0, "pcm", "speed", "only speed 1.0 is supported"),
        ("alloy", 1.0, "aac", "response_format", "'aac' is not supported by this server"),
    ],
)
def test_openai_errors_raise_bad_request_with_our_message(
    worker: LiveServer,
    voice: str,
    speed: float,
    response_format: SpeechFormat,
    param: str,
    message: str,
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        _openai(worker).audio.speech.create(
            model="tts-1", voice=voice, input=TEXT, speed=speed, response_format=response_format
        )
    assert raised.value.status_code == 400 and raised.value.param == param
    assert message in raised.value.message


# --- ElevenLabs' SDK: POST /v1/text-to-speech/{voice_id}[/stream][/with-timestamps] --------------


def _elevenlabs(server: LiveServer) -> ElevenLabs:
    return ElevenLabs(base_url=server.url, api_key=API_KEY)


def test_elevenlabs_convert_is_the_engine_audio(
    worker: LiveServer, engine: RecordingEngine
) -> None:
    audio = _elevenlabs(worker).text_to_speech.convert(
        "default", text=TEXT, output_format="pcm_24000"
    )
    assert _same(as_pcm(b"".join(audio)), engine.pcm())


def test_elevenlabs_stream_resamples_and_passes_settings_on(
    worker: LiveServer, engine: RecordingEngine
) -> None:
    audio = _elevenlabs(worker).text_to_speech.stream(
        "alloy",
        text=TEXT,
        output_format="pcm_16000",
        model_id="eleven_flash_v2_5",
        language_code="en",
        seed=7,
        voice_settings=VoiceSettings(
            stability=0.5, similarity_boost=0.75, style=1.0, use_speaker_boost=True, speed=1.0
        ),
    )
    assert _same(as_pcm(b"".join(audio)), engine.pcm(16000))
    request = engine.requests[-1]
    assert request.seed == 7 and request.params.exaggeration == 2.0  # style 1: the most


def test_elevenlabs_default_format_is_mp3_at_44_1_khz(
    worker: LiveServer, engine: RecordingEngine
) -> None:
    mp3 = b"".join(_elevenlabs(worker).text_to_speech.stream("default", text=TEXT))
    audio, rate = soundfile.read(io.BytesIO(mp3))
    seconds = engine.pcm().size / 24000
    assert rate == 44100 and abs(audio.shape[0] / rate - seconds) < 0.1


def test_elevenlabs_stream_with_timestamps_chunks_carry_the_audio(
    worker: LiveServer, engine: RecordingEngine
) -> None:
    chunks = list(
        _elevenlabs(worker).text_to_speech.stream_with_timestamps(
            "default", text=TEXT, output_format="pcm_24000"
        )
    )
    assert len(chunks) > 1 and all(chunk.alignment is None for chunk in chunks)
    audio = b"".join(base64.b64decode(chunk.audio_base_64 or "") for chunk in chunks)
    assert _same(as_pcm(audio), engine.pcm())


def test_elevenlabs_convert_with_timestamps_is_the_engine_audio(
    worker: LiveServer, engine: RecordingEngine
) -> None:
    response = _elevenlabs(worker).text_to_speech.convert_with_timestamps(
        "default", text=TEXT, output_format="pcm_16000"
    )
    assert response.alignment is None and response.normalized_alignment is None
    assert _same(as_pcm(base64.b64decode(response.audio_base_64)), engine.pcm(16000))


@pytest.mark.parametrize(
    ("voice", "output_format", "status", "message"),
    [
        ("nobody", "pcm_24000", "invalid_voice", "unknown voice 'nobody'"),
        ("default", "wav_44100", "invalid_output_format", "'wav_44100' is not supported"),
    ],
)
def test_elevenlabs_errors_raise_unprocessable_entity_with_our_detail(
    worker: LiveServer, voice: str, output_format: Any, status: str, message: str
) -> None:
    with pytest.raises(UnprocessableEntityError) as raised:
        b"".join(
            _elevenlabs(worker).text_to_speech.convert(
                voice, text=TEXT, output_format=output_format
            )
        )
    assert raised.value.status_code == 422
    detail = raised.value.body["detail"]
    assert detail["status"] == status and message in detail["message"]


# The SDK reads the close code the deprecated way when the worker ends the socket.
@pytest.mark.filterwarnings("ignore:ConnectionClosed.code is deprecated:DeprecationWarning")
def test_elevenlabs_convert_realtime_streams_text_in_over_stream_input(
    tmp_path: Path, engine: RecordingEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # convert_realtime always connects with wss:// (it replaces the base URL's scheme), so the
    # worker is served over TLS with a certificate this process trusts.
    cert, key = self_signed_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    app = create_app(_config(tmp_path), lambda: engine)
    with LiveTlsServer(app, cert, key) as live:
        wait_ready(live.url)
        words = iter(["Hello ", "there, ", "friend. ", "How ", "are ", "you?"])
        audio = b"".join(
            _elevenlabs(live).text_to_speech.convert_realtime(
                "default", text=words, output_format="pcm_24000"
            )
        )
    assert engine.requests[-1].text_feed is not None
    assert _same(as_pcm(audio), engine.pcm())


# --- LiveKit Agents' ElevenLabs plugin -------------------------------------------------------


def _livekit_tts(
    server: LiveServer, session: aiohttp.ClientSession, **options: Any
) -> livekit_elevenlabs.TTS:
    return livekit_elevenlabs.TTS(
        base_url=f"{server.url}/v1", api_key=API_KEY, http_session=session, **options
    )


def _livekit_pcm(events: list[SynthesizedAudio]) -> Pcm:
    return np.concatenate([np.frombuffer(e.frame.data, "<i2") for e in events])


def _without_end_marker(pcm: Pcm, expected: Pcm) -> Pcm:
    """`pcm` less the silence LiveKit may add after the audio to mark a segment's end."""
    tail = pcm[expected.size :]
    assert tail.size <= LIVEKIT_END_MARKER and not tail.any()
    return pcm[: expected.size]


def _livekit_synthesize(server: LiveServer, **options: Any) -> list[SynthesizedAudio]:
    async def synthesize() -> list[SynthesizedAudio]:
        async with aiohttp.ClientSession() as session:
            tts = _livekit_tts(server, session, voice_id="default", **options)
            events = [event async for event in tts.synthesize(TEXT)]
            await tts.aclose()
            return events

    return asyncio.run(synthesize())


def test_livekit_synthesize_is_the_engine_audio(
    worker: LiveServer, engine: RecordingEngine
) -> None:
    events = _livekit_synthesize(worker, encoding="pcm_24000")
    assert events[-1].is_final and {e.frame.sample_rate for e in events} == {24000}
    expected = engine.pcm()
    assert _same(_without_end_marker(_livekit_pcm(events), expected), expected)


def test_livekit_synthesize_decodes_its_default_mp3_22050_32(
    worker: LiveServer, engine: RecordingEngine
) -> None:
    events = _livekit_synthesize(worker)
    pcm = _livekit_pcm(events)
    assert {e.frame.sample_rate for e in events} == {22050}
    assert abs(pcm.size / 22050 - engine.pcm().size / 24000) < 0.1
    assert np.abs(pcm).max() > 0.2 * 32767  # the tone, not silence


@pytest.mark.parametrize(
    "options",
    [{}, {"chunk_length_schedule": [120, 160, 250, 290]}],
    ids=["auto-mode", "chunk-schedule"],
)
def test_livekit_stream_turns_flush_close_their_context_and_get_all_audio(
    worker: LiveServer, engine: RecordingEngine, options: dict[str, Any]
) -> None:
    """Each turn: words as an LLM streams them, then the plugin's flush and close_context on
    the socket it keeps; the turn ends when the worker's isFinal comes."""

    async def turn(tts: livekit_elevenlabs.TTS, words: list[str]) -> list[SynthesizedAudio]:
        stream = tts.stream()
        for word in words:
            stream.push_text(word)
        stream.flush()
        stream.end_input()
        events = [event async for event in stream]
        await stream.aclose()
        return events

    async def conversation() -> list[tuple[list[SynthesizedAudio], Pcm]]:
        async with aiohttp.ClientSession() as session:
            tts = _livekit_tts(worker, session, voice_id="default", encoding="pcm_16000", **options)
            turns = []
            for words in (["Hello ", "there, ", "friend. "], ["How ", "are ", "you? ", "Fine."]):
                turns.append((await turn(tts, words), engine.pcm(16000)))
            await tts.aclose()
            return turns

    turns = asyncio.run(conversation())
    for events, expected in turns:
        assert events[-1].is_final and {e.frame.sample_rate for e in events} == {16000}
        assert _same(_without_end_marker(_livekit_pcm(events), expected), expected)
    text_in = [r for r in engine.requests if r.text_feed is not None]
    assert len(text_in) == 2 and all(r.text_feed is not None and r.text_feed.ended for r in text_in)


def test_livekit_interruption_stops_generation(worker: LiveServer, engine: RecordingEngine) -> None:
    """An agent interrupted mid-turn closes its stream: the plugin sends close_context (in
    auto mode, its default, after each sentence went with flush) and drops what still comes."""
    engine.chunks, engine.delay = 100, 0.05

    async def interrupt() -> int:
        async with aiohttp.ClientSession() as session:
            tts = _livekit_tts(worker, session, voice_id="default", encoding="pcm_24000")
            stream = tts.stream()
            for word in ["Hello ", "there, ", "friend. ", "How ", "are ", "you? "]:
                stream.push_text(word)
            async for _ in stream:
                break  # the first audio: the user talks over it
            await stream.aclose()
            deadline = time.monotonic() + 2
            while engine.cancelled == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            cancelled = engine.cancelled  # closing the socket below cancels everything
            await tts.aclose()
            return cancelled

    assert asyncio.run(interrupt()) == 1


def test_livekit_errors_reach_the_plugin(worker: LiveServer) -> None:
    """The plugin reports an HTTP error by its status, and a socket error message by its
    `error` name (as APIError, the cause of its "Could not synthesize")."""
    no_retry = APIConnectOptions(max_retry=0)

    async def attempt() -> tuple[BaseException, BaseException]:
        async with aiohttp.ClientSession() as session:
            tts = _livekit_tts(worker, session, voice_id="nobody", encoding="pcm_24000")
            with pytest.raises(APIStatusError) as http_error:
                [event async for event in tts.synthesize(TEXT, conn_options=no_retry)]
            stream = tts.stream(conn_options=no_retry)
            stream.push_text(TEXT)
            stream.end_input()
            with pytest.raises(APIStatusError) as socket_error:
                [event async for event in stream]
            await tts.aclose()
            return http_error.value, socket_error.value

    http_error, socket_error = asyncio.run(attempt())
    assert isinstance(http_error, APIStatusError) and http_error.status_code == 422
    cause = socket_error.__cause__
    assert isinstance(cause, APIError) and cause.message == "invalid_voice"


# --- pipecat's ElevenLabs services (their own environment) -----------------------------------


@pytest.fixture(scope="module")
def pipecat() -> Path:
    return pipecat_python()


def test_pipecat_websocket_service_gets_the_engine_audio(
    pipecat: Path, worker: LiveServer, engine: RecordingEngine
) -> None:
    result = drive(pipecat, "websocket", worker.url, TEXT, sample_rate=24000)
    assert result["errors"] == [] and result["sample_rates"] == [24000]
    assert result["frames"][-1] == "TTSStoppedFrame"  # the worker's isFinal
    assert _same(as_pcm(base64.b64decode(result["audio"])), engine.pcm())


def test_pipecat_http_service_gets_the_engine_audio(
    pipecat: Path, worker: LiveServer, engine: RecordingEngine
) -> None:
    result = drive(pipecat, "http", worker.url, TEXT, sample_rate=16000)
    assert result["errors"] == [] and result["sample_rates"] == [16000]
    assert _same(as_pcm(base64.b64decode(result["audio"])), engine.pcm(16000))


def test_pipecat_interruption_stops_generation(
    pipecat: Path, worker: LiveServer, engine: RecordingEngine
) -> None:
    """pipecat sends the text, a flush and close_context at once; when the user talks over
    the bot it closes the context again, and generation must stop there."""
    engine.chunks, engine.delay = 100, 0.05  # 5 s of generation
    result = drive(pipecat, "websocket", worker.url, TEXT, interrupt_after=0.5)
    _wait_for_cancel(engine)
    # Stopped by the interruption (0.5 s in), well before pipecat leaves the socket (2.5 s in).
    assert engine.cancelled == 1 and engine.chunks_made() < 40
    heard, made = as_pcm(base64.b64decode(result["audio"])), engine.pcm()
    assert 0 < heard.size <= made.size and _same(heard, made[: heard.size])


def test_pipecat_cancelled_pipeline_stops_generation(
    pipecat: Path, worker: LiveServer, engine: RecordingEngine
) -> None:
    """A cancelled pipeline (a call hanging up) sends close_socket, waits 2 s for the worker's
    close, then closes the socket itself: generation must stop then at the latest."""
    engine.chunks, engine.delay = 200, 0.05  # 10 s of generation
    drive(pipecat, "websocket", worker.url, TEXT, cancel_after=0.5)
    _wait_for_cancel(engine)
    assert engine.cancelled == 1 and engine.chunks_made() < 150


def test_pipecat_http_error_reaches_the_pipeline_with_our_message(
    pipecat: Path, worker: LiveServer
) -> None:
    result = drive(pipecat, "http", worker.url, TEXT, voice="nobody", sample_rate=16000)
    assert result["audio"] == ""
    assert any("unknown voice 'nobody'" in error for error in result["errors"])


def test_pipecat_websocket_error_ends_the_turn_without_audio(
    pipecat: Path, worker: LiveServer
) -> None:
    # pipecat's socket reader only looks for audio and isFinal: the worker's error message is
    # dropped, and the turn ends with pipecat's own error once its wait for audio runs out.
    result = drive(pipecat, "websocket", worker.url, TEXT, voice="nobody")
    assert result["audio"] == ""
    assert any("completed with no audio" in error for error in result["errors"])
