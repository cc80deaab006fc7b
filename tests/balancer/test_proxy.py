"""The proxy relays requests and responses exactly and without buffering."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
from pathlib import Path

import httpx

from tests.audio import wav_bytes
from tests.balancer.conftest import stream
from tests.balancer.processes import FakeWorker, live_balancer
from tests.balancer.upstreams import echo, gated_stream, scripted_stream
from tests.live_server import LiveServer
from tests.sse import iter_events


def event_stream_pieces(seed: int) -> tuple[bytes, list[bytes]]:
    """A worker-like event stream, cut into writes at awkward places."""
    rng = random.Random(seed)
    events = [b": ping - 1\r\n\r\n"]
    for chunk_id in range(1, 31):
        audio = base64.b64encode(rng.randbytes(rng.choice([10, 3000, 70000]))).decode()
        data = json.dumps({"chunk_id": chunk_id, "audio_chunk": audio})
        events.append(f"event: audio_chunk\r\ndata: {data}\r\n\r\n".encode())
    events.append(b'event: done\r\ndata: {"total_chunks": 30}\r\n\r\n')
    whole = b"".join(events)
    cuts = sorted(rng.sample(range(1, len(whole)), 60))
    pieces = [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)]
    return whole, pieces


def test_event_stream_bytes_arrive_exactly_as_sent() -> None:
    whole, pieces = event_stream_pieces(seed=3)
    with (
        LiveServer(scripted_stream(pieces)) as upstream,
        live_balancer([upstream.url]) as lb,
        httpx.stream("POST", f"{lb.url}/synthesize-stream", data={"text": "x"}) as r,
    ):
        received = b"".join(r.iter_raw())
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-upstream-worker"] == upstream.url
    assert hashlib.sha256(received).digest() == hashlib.sha256(whole).digest()


def test_other_streams_arrive_exactly_as_sent() -> None:
    rng = random.Random(5)
    pieces = [rng.randbytes(rng.randint(1, 40000)) for _ in range(40)]
    app = scripted_stream(pieces, media_type="audio/wav")
    with (
        LiveServer(app) as upstream,
        live_balancer([upstream.url]) as lb,
        httpx.stream("POST", f"{lb.url}/synthesize-stream") as r,
    ):
        assert b"".join(r.iter_raw()) == b"".join(pieces)


def test_each_event_is_relayed_as_soon_as_the_worker_sends_it() -> None:
    gate = threading.Event()
    first = b'event: audio_chunk\r\ndata: {"chunk_id": 1}\r\n\r\n'
    rest = b'event: done\r\ndata: {"total_chunks": 1}\r\n\r\n'
    app = gated_stream(first, rest, gate)
    # The upstream holds everything after the first event until the gate opens, so a
    # buffering proxy would time out here.
    with (
        LiveServer(app) as upstream,
        live_balancer([upstream.url]) as lb,
        httpx.stream("POST", f"{lb.url}/synthesize-stream", timeout=10) as r,
    ):
        events = iter_events(r)
        assert next(events).json() == {"chunk_id": 1}
        gate.set()
        assert next(events).event == "done"


def test_requests_reach_the_worker_byte_for_byte() -> None:
    audio = random.Random(1).randbytes(5 * 1024 * 1024)
    form = httpx.Request(
        "POST", "http://x", data={"name": "Ada"}, files={"audio": ("a.wav", audio, "audio/wav")}
    )
    body = form.read()
    sent_headers = {
        "content-type": form.headers["content-type"],
        "x-custom": "kept",
        "authorization": "Bearer secret",
        "connection": "keep-alive, x-hop",
        "x-hop": "dropped",
    }
    with LiveServer(echo()) as upstream, live_balancer([upstream.url]) as lb:
        seen = httpx.post(
            f"{lb.url}/voices/some%20id?x=1&y=%2F", content=body, headers=sent_headers, timeout=30
        ).json()
    assert seen["method"] == "POST"
    assert seen["target"] == "/voices/some%20id?x=1&y=%2F"
    assert (seen["length"], seen["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    got = dict(seen["headers"])
    for name in ("content-type", "x-custom", "authorization"):
        assert got[name] == sent_headers[name]
    assert got["content-length"] == str(len(body))
    assert got["x-forwarded-for"] == "127.0.0.1"
    assert "x-hop" not in got
    # httpx adds these unless told otherwise; the test client sent its own, relayed as is.
    assert got["user-agent"].startswith("python-httpx")


def test_nothing_is_added_to_what_the_client_sent() -> None:
    with LiveServer(echo()) as upstream, live_balancer([upstream.url]) as lb:
        client = httpx.Client()
        for name in ("accept", "accept-encoding", "user-agent"):
            del client.headers[name]
        seen = client.get(f"{lb.url}/anything").json()
    names = {k for k, _ in seen["headers"]}
    assert names == {
        "host",
        "connection",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
    }


def test_an_oversized_body_is_refused_before_routing() -> None:
    with LiveServer(echo()) as upstream, live_balancer([upstream.url], max_body_bytes=1000) as lb:
        response = httpx.post(f"{lb.url}/synthesize", content=b"x" * 1001)
        assert response.status_code == 413 and "1000" in response.json()["error"]
        assert lb.worker_stats(upstream.url)["requests"] == 0


def test_chunks_through_the_balancer_equal_the_workers(fast: list[FakeWorker]) -> None:
    worker = fast[0]
    _, direct = stream(worker.url, text="Same text.", seed="7")
    with live_balancer([worker.url]) as lb:
        response, proxied = stream(lb.url, text="Same text.", seed="7")
    assert response.headers["x-upstream-worker"] == worker.url
    assert [e.event for e in proxied] == [e.event for e in direct]
    chunks = [e.json() for e in proxied if e.event == "audio_chunk"]
    assert [c["chunk_id"] for c in chunks] == list(range(1, len(chunks) + 1))
    direct_audio = [e.json()["audio_chunk"] for e in direct if e.event == "audio_chunk"]
    assert [c["audio_chunk"] for c in chunks] == direct_audio


def test_openai_audio_streams_are_relayed(fast: list[FakeWorker]) -> None:
    body = {"input": "Hello.", "voice": "alloy", "response_format": "pcm"}
    direct = httpx.post(f"{fast[0].url}/v1/audio/speech", json=body, timeout=30)
    with live_balancer([fast[0].url]) as lb:
        proxied = httpx.post(f"{lb.url}/v1/audio/speech", json=body, timeout=30)
    assert proxied.status_code == direct.status_code == 200
    assert proxied.content == direct.content and len(proxied.content) > 0


def test_worker_errors_pass_through_unchanged(fast: list[FakeWorker]) -> None:
    with live_balancer([fast[0].url]) as lb:
        response = httpx.post(f"{lb.url}/synthesize-stream", data={"text": "Hi", "top_p": "7"})
        assert response.status_code == 422 and response.json()["field"] == "top_p"
        assert httpx.get(f"{lb.url}/no-such-path").status_code == 404


def test_the_frontend_is_served_without_hiding_the_api(
    tmp_path: Path, fast: list[FakeWorker]
) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>player</title>")
    (tmp_path / "assets" / "app.js").write_text("console.log(1)")
    (tmp_path / "voices").write_text("a file that must not shadow the API")
    with live_balancer([fast[0].url], static_dir=tmp_path) as lb:
        index = httpx.get(f"{lb.url}/")
        assert index.status_code == 200 and "player" in index.text
        assert index.headers["content-type"].startswith("text/html")
        assert httpx.get(f"{lb.url}/assets/app.js").text == "console.log(1)"
        assert httpx.get(f"{lb.url}/voices").json() == {"voices": []}
        assert httpx.get(f"{lb.url}/../pyproject.toml").status_code == 404
        _, events = stream(lb.url)
        assert events[-1].event == "done"


def test_without_a_frontend_everything_is_proxied(fast: list[FakeWorker], tmp_path: Path) -> None:
    with live_balancer([fast[0].url], static_dir=tmp_path / "missing") as lb:
        response = httpx.get(f"{lb.url}/")
        assert response.status_code == 404 and response.headers["x-upstream-worker"]


def test_voice_uploads_reach_workers_sharing_a_directory(fast: list[FakeWorker]) -> None:
    with live_balancer([w.url for w in fast]) as lb:
        created = httpx.post(
            f"{lb.url}/voices",
            data={"name": "Shared"},
            files={"audio": ("v.wav", wav_bytes(6.0), "audio/wav")},
            timeout=30,
        )
        assert created.status_code == 201
        voice_id = created.json()["id"]
        for worker in fast:
            listed = httpx.get(f"{worker.url}/voices").json()["voices"]
            assert voice_id in [v["id"] for v in listed]
        assert httpx.delete(f"{lb.url}/voices/{voice_id}").status_code == 204
