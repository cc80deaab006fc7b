"""`/synthesize-stream` over a real uvicorn server with the fake engine."""

from __future__ import annotations

import base64
import contextlib
import time

import httpx
import pytest

from server.config import ServerConfig
from tests.audio import wav_bytes
from tests.fakes import FakeEngine
from tests.live_server import LiveServer
from tests.server.conftest import replace, serving, wait_ready
from tests.sse import iter_events


def test_stream_sends_the_seed_events_in_order(server: LiveServer) -> None:
    with httpx.stream(
        "POST", f"{server.url}/synthesize-stream", data={"text": "Hello there.", "seed": "3"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(iter_events(response))
    chunks = [e.json() for e in events if e.event == "audio_chunk"]
    assert [c["chunk_id"] for c in chunks] == [1, 2, 3, 4, 5]
    for chunk in chunks:
        assert chunk["sample_rate"] == 24000 and chunk["encoding"] == "pcm_s16le"
        assert len(base64.b64decode(chunk["audio_chunk"])) == 2 * int(0.2 * 24000)
        assert set(chunk["metrics"]) == {
            "first_chunk_latency",
            "total_latency",
            "rtf",
            "total_audio_duration",
            "chunks_generated",
        }
    assert events[-1].event == "done"
    done = events[-1].json()
    assert done["message"] == "Streaming complete" and done["total_chunks"] == 5
    assert done["metrics"]["token_cap_hit"] is False and done["metrics"]["seed"] == 3


def test_urlencoded_forms_are_accepted(server: LiveServer, fake: FakeEngine) -> None:
    with httpx.stream(
        "POST",
        f"{server.url}/synthesize-stream",
        content=b"text=Hi+there&chunk_size=20&temperature=0.5",
        headers={"content-type": "application/x-www-form-urlencoded"},
    ) as response:
        events = list(iter_events(response))
    assert events[-1].event == "done"
    request = fake.requests[-1]
    assert request.chunk_size == 20 and request.params.temperature == 0.5


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("exaggeration", "2.5"),
        ("temperature", "0"),
        ("cfg_weight", "-0.1"),
        ("chunk_size", "5"),
        ("chunk_size", "201"),
        ("chunk_size", "12.5"),
        ("top_p", "1.5"),
        ("top_k", "-1"),
        ("min_p", "nan"),
        ("repetition_penalty", "0.5"),
        ("seed", "-3"),
        ("max_new_tokens", "0"),
        ("temperature", "warm"),
    ],
)
def test_bad_fields_are_422_naming_the_field(server: LiveServer, field: str, value: str) -> None:
    response = httpx.post(f"{server.url}/synthesize-stream", data={"text": "Hello.", field: value})
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == field and field in body["error"] and "allowed" in body


def test_missing_and_overlong_text_are_422(base_config: ServerConfig, fake: FakeEngine) -> None:
    with serving(replace(base_config, max_text_chars=20), fake) as live:
        wait_ready(live.url)
        missing = httpx.post(f"{live.url}/synthesize-stream", data={"chunk_size": "20"})
        long = httpx.post(f"{live.url}/synthesize-stream", data={"text": "x" * 21})
    assert missing.status_code == 422 and missing.json()["field"] == "text"
    assert long.status_code == 422 and "at most 20" in long.json()["error"]


def test_not_a_form_is_400(server: LiveServer) -> None:
    response = httpx.post(f"{server.url}/synthesize-stream", json={"text": "hi"})
    assert response.status_code == 400 and "multipart/form-data" in response.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        b'--abc\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi\r\n--abc--\r\n',
        b"--xyz\r\nNot a header line\r\n\r\nhi\r\n--xyz--\r\n",
        b"no multipart framing at all",
    ],
    ids=["wrong-boundary", "bad-part-header", "no-framing"],
)
def test_broken_multipart_is_400(server: LiveServer, body: bytes) -> None:
    response = httpx.post(
        f"{server.url}/synthesize-stream",
        content=body,
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("could not read the form")


def test_a_part_cut_short_is_missing_so_its_field_is_422(server: LiveServer) -> None:
    # The multipart parser drops a part without its closing boundary: the field is absent.
    response = httpx.post(
        f"{server.url}/synthesize-stream",
        content=b'--xyz\r\nContent-Disposition: form-data; name="text"\r\n\r\nhel',
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 422 and response.json()["field"] == "text"


def test_bad_audio_prompts_are_422_before_the_stream(server: LiveServer) -> None:
    for audio, message in ((wav_bytes(2.0), "longer than 5 s"), (b"noise" * 50, "decoded")):
        response = httpx.post(
            f"{server.url}/synthesize-stream",
            data={"text": "Hello."},
            files={"audio_prompt": ("p.wav", audio, "audio/wav")},
            timeout=60,
        )
        assert response.status_code == 422
        assert response.json()["field"] == "audio_prompt" and message in response.json()["error"]


def test_good_audio_prompt_streams_and_is_cached(server: LiveServer, fake: FakeEngine) -> None:
    prompt = wav_bytes(6.0)
    for _ in range(2):
        with httpx.stream(
            "POST",
            f"{server.url}/synthesize-stream",
            data={"text": "Hello."},
            files={"audio_prompt": ("p.wav", prompt, "audio/wav")},
            timeout=60,  # the first decode in a process loads librosa's resampler
        ) as response:
            assert list(iter_events(response))[-1].event == "done"
    first, second = fake.requests[-2:]
    assert first.voice is not None and first.voice is second.voice


def test_upload_over_the_limit_is_413(base_config: ServerConfig, fake: FakeEngine) -> None:
    with serving(replace(base_config, max_upload_bytes=100_000), fake) as live:
        wait_ready(live.url)
        response = httpx.post(
            f"{live.url}/synthesize-stream",
            data={"text": "Hello."},
            files={"audio_prompt": ("p.wav", wav_bytes(6.0), "audio/wav")},
        )
    assert response.status_code == 413


def test_voice_and_prompt_together_is_422(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/synthesize-stream",
        data={"text": "Hello.", "voice": "someone"},
        files={"audio_prompt": ("p.wav", wav_bytes(6.0), "audio/wav")},
    )
    assert response.status_code == 422 and response.json()["field"] == "voice"


def test_unknown_voice_is_422(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/synthesize-stream", data={"text": "Hello.", "voice": "../../etc/passwd"}
    )
    assert response.status_code == 422 and response.json()["field"] == "voice"


def test_full_server_answers_503_with_retry_after(
    base_config: ServerConfig, fake: FakeEngine
) -> None:
    fake.chunks, fake.delay = 40, 0.05
    with serving(replace(base_config, max_streams=1, max_queue=0), fake) as live:
        wait_ready(live.url)
        with httpx.stream(
            "POST", f"{live.url}/synthesize-stream", data={"text": "Long one."}
        ) as busy:
            events = iter_events(busy)  # kept alive: dropping it would close the stream
            next(events)
            refused = httpx.post(f"{live.url}/synthesize-stream", data={"text": "Me too."})
            assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
            assert "busy" in refused.json()["error"]


def test_queued_request_waits_then_streams(base_config: ServerConfig, fake: FakeEngine) -> None:
    fake.chunks, fake.delay = 10, 0.05
    with serving(replace(base_config, max_streams=1, max_queue=1), fake) as live:
        wait_ready(live.url)
        with httpx.stream("POST", f"{live.url}/synthesize-stream", data={"text": "One."}) as a:
            first = iter_events(a)
            next(first)
            with httpx.stream("POST", f"{live.url}/synthesize-stream", data={"text": "Two."}) as b:
                assert b.status_code == 200
                health = httpx.get(f"{live.url}/health").json()
                assert health["active_streams"] == 1 and health["queued"] == 1
                assert list(first)[-1].event == "done"
                events = list(iter_events(b))
    assert events[-1].event == "done"


def test_client_disconnect_stops_generation(base_config: ServerConfig, fake: FakeEngine) -> None:
    fake.chunks, fake.delay = 200, 0.05
    with serving(base_config, fake) as live:
        wait_ready(live.url)
        with httpx.stream(
            "POST", f"{live.url}/synthesize-stream", data={"text": "Endless."}
        ) as response:
            events = iter_events(response)
            next(events)
            next(events)
        deadline = time.monotonic() + 5
        while fake.cancelled == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        produced = fake.produced
        time.sleep(0.3)
        health = httpx.get(f"{live.url}/health").json()
    assert fake.cancelled == 1
    assert fake.produced == produced  # nothing generated after the cancel
    assert produced < 10
    assert health["active_streams"] == 0 and health["queued"] == 0


def test_failure_mid_stream_is_an_error_event_and_worker_survives(
    base_config: ServerConfig, fake: FakeEngine
) -> None:
    fake.fail_after = 2
    with serving(base_config, fake) as live:
        wait_ready(live.url)
        with httpx.stream("POST", f"{live.url}/synthesize-stream", data={"text": "x"}) as r:
            events = list(iter_events(r))
        fake.fail_after = None
        with httpx.stream("POST", f"{live.url}/synthesize-stream", data={"text": "y"}) as r:
            after = list(iter_events(r))
        health = httpx.get(f"{live.url}/health").json()
    assert [e.event for e in events] == ["audio_chunk", "audio_chunk", "error"]
    assert "fake engine failure" in events[-1].json()["error"]
    assert after[-1].event == "done"
    assert health["status"] == "ready" and health["active_streams"] == 0


def test_client_leaving_while_waiting_for_the_device_frees_its_slot_at_once(
    base_config: ServerConfig, fake: FakeEngine
) -> None:
    # One more admitted stream than the device runs at once (1 serial, a full batch when
    # batched): the last waits for the engine. If its client leaves, its slot must come back
    # now, not when the others end.
    running = base_config.max_batch
    fake.chunks, fake.delay = 100, 0.05
    config = replace(base_config, max_streams=running + 1, max_queue=0)
    with serving(config, fake) as live, contextlib.ExitStack() as streams:
        wait_ready(live.url)
        readers = []  # kept: a reader that is collected closes its response
        for index in range(running):
            response = streams.enter_context(
                httpx.stream("POST", f"{live.url}/synthesize-stream", data={"text": f"{index}."})
            )
            readers.append(iter_events(response))
            next(readers[-1])
        with httpx.stream(
            "POST", f"{live.url}/synthesize-stream", data={"text": "Last."}, timeout=2
        ) as last:
            assert last.status_code == 200
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if httpx.get(f"{live.url}/health").json()["active_streams"] == running:
                break
            time.sleep(0.02)
        assert httpx.get(f"{live.url}/health").json()["active_streams"] == running
        assert fake.produced < 100 * running  # the others are still running
    assert len(fake.requests) == running  # the last never reached the engine
