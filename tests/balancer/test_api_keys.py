"""The balancer with `--api-keys-file`, in front of workers without keys (on loopback): every
endpoint kind with no key, a wrong key, a user key and an admin key; the refusals in each
API's shape, WebSockets refused before their handshake; the browser's token flow; the
per-key stream limit and its release; `/stats` by key name; and the web app's files open."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deployment.probes import HealthProbe
from tests.access_checks import (
    ADMIN_KEY,
    ENDPOINTS,
    SOCKETS,
    USER_KEY,
    Endpoint,
    Socket,
    assert_refused,
    bearer,
    check_endpoint,
    check_release_on_disconnect,
    check_socket,
    check_stream_limit,
    check_token_minting,
    mint_token,
    open_socket,
    with_token,
    write_keys,
)
from tests.balancer.processes import FakeWorker, LiveBalancer, live_balancer
from tests.fake_ws_worker import FakeSocketWorker
from tests.live_server import LiveServer


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_keys(tmp_path_factory.mktemp("balancer-keys") / "keys.toml")


@pytest.fixture(scope="module")
def keyed(fast_pair: list[FakeWorker], keys_file: Path) -> Iterator[LiveBalancer]:
    with live_balancer([w.url for w in fast_pair], api_keys_file=keys_file) as balancer:
        yield balancer


def solo_streams(balancer: LiveBalancer) -> int:
    stats = httpx.get(f"{balancer.url}/stats", timeout=5).json()
    streams: int = stats["access"]["keys"]["solo"]["streams_open"]
    return streams


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_http_endpoints_need_the_right_key(keyed: LiveBalancer, endpoint: Endpoint) -> None:
    check_endpoint(keyed.url, endpoint)


@pytest.mark.parametrize("socket", SOCKETS, ids=lambda s: s.path.split("?")[0])
def test_sockets_need_a_key_or_a_token_before_the_handshake(
    keyed: LiveBalancer, socket: Socket
) -> None:
    check_socket(keyed.url, socket)


def test_only_a_key_in_a_header_mints_a_token(keyed: LiveBalancer) -> None:
    check_token_minting(keyed.url)


def test_refused_requests_never_reach_a_worker(keyed: LiveBalancer) -> None:
    before = keyed.stats()
    for _ in range(3):
        assert_refused(httpx.post(f"{keyed.url}/synthesize", data={"text": "Hi."}), 401, "native")
    after = keyed.stats()
    assert after["totals"]["requests"] == before["totals"]["requests"]
    assert after["access"]["unauthorized"] == before["access"]["unauthorized"] + 3


def test_the_token_is_taken_out_of_what_the_worker_sees(keys_file: Path) -> None:
    fake = FakeSocketWorker()
    with LiveServer(fake.app) as worker, live_balancer([worker.url], api_keys_file=keys_file) as b:
        token = mint_token(b.url, USER_KEY)
        path = with_token("/v1/text-to-speech/v/stream-input?output_format=pcm_24000", token)
        with open_socket(b.url, path) as socket:
            socket.send(json.dumps({"echo": 1}))
            assert json.loads(socket.recv(timeout=10)) == {"type": "echo", "echo": 1}
        with open_socket(b.url, "/ws/tts?a=1", {"xi-api-key": USER_KEY}) as socket:
            socket.send(json.dumps({"echo": 2}))
            socket.recv(timeout=10)
    first, second = fake.sockets
    assert first.target == "/v1/text-to-speech/v/stream-input?output_format=pcm_24000"
    assert second.target == "/ws/tts?a=1"


def test_stats_show_each_key_by_name_and_can_be_restricted(keyed: LiveBalancer) -> None:
    assert httpx.post(
        f"{keyed.url}/synthesize", data={"text": "Hi."}, headers=bearer(USER_KEY)
    ).is_success
    stats = keyed.stats()
    keys = stats["access"]["keys"]
    assert set(keys) == {"user", "admin", "solo"}
    assert keys["user"]["requests"] >= 1 and keys["solo"]["max_streams"] == 1
    assert USER_KEY not in httpx.get(f"{keyed.url}/stats").text
    gatekeeper = keyed.state.gatekeeper
    assert gatekeeper is not None
    gatekeeper.restrict_ops = True
    try:
        for path in ("/stats", "/metrics"):
            assert_refused(httpx.get(f"{keyed.url}{path}"), 401, "native")
            assert_refused(httpx.get(f"{keyed.url}{path}", headers=bearer(USER_KEY)), 403, "native")
            assert httpx.get(f"{keyed.url}{path}", headers=bearer(ADMIN_KEY)).status_code == 200
        assert httpx.get(f"{keyed.url}/health").status_code == 200
    finally:
        gatekeeper.restrict_ops = False


def test_a_keys_streams_are_limited_and_freed_when_a_socket_closes(keyed: LiveBalancer) -> None:
    check_stream_limit(keyed.url, lambda: solo_streams(keyed))


def test_a_stream_the_client_leaves_frees_its_slot(
    slow_pair: list[FakeWorker], keys_file: Path
) -> None:
    with live_balancer([w.url for w in slow_pair], api_keys_file=keys_file) as balancer:
        check_release_on_disconnect(balancer.url, lambda: solo_streams(balancer))
        balancer.wait_in_flight(0)


def test_the_web_app_loads_without_a_key(
    fast_pair: list[FakeWorker], keys_file: Path, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>app</title>")
    with live_balancer(
        [w.url for w in fast_pair], api_keys_file=keys_file, static_dir=tmp_path
    ) as balancer:
        assert "<title>app</title>" in httpx.get(f"{balancer.url}/").text
        assert_refused(httpx.get(f"{balancer.url}/voices"), 401, "native")


def test_a_bad_keys_file_stops_the_balancer_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from balancer.__main__ import main

    bad = tmp_path / "keys.toml"
    bad.write_text('[[keys]]\nname = "x"\nrole = "user"\n')
    assert main(["--workers", "127.0.0.1:1", "--api-keys-file", str(bad)]) == 2
    assert "exactly one of sha256" in capsys.readouterr().err


def test_the_supervisors_key_reads_restricted_stats_so_restarts_can_wait_for_rotation(
    fast_pair: list[FakeWorker], keys_file: Path
) -> None:
    # start_streaming_servers.sh with --restrict-ops: its supervisor decides a restarted worker
    # is back from /stats, which only admin keys may read then; it has a key of its own.
    worker = fast_pair[0].url
    with live_balancer(
        [worker], api_keys_file=keys_file, restrict_ops=True, supervisor_key="sup-key"
    ) as lb:
        assert httpx.get(f"{lb.url}/stats", headers=bearer("sup-key")).status_code == 200
        assert_refused(httpx.get(f"{lb.url}/stats"), 401, "native")

        async def in_rotation(key: str | None) -> bool | None:
            async with httpx.AsyncClient(timeout=5) as client:
                return await HealthProbe(client, lb.url, key).in_rotation(worker)

        assert asyncio.run(in_rotation("sup-key")) is True
        assert asyncio.run(in_rotation(None)) is False  # what the supervisor saw before
    with live_balancer([worker], api_keys_file=keys_file, restrict_ops=True) as lb:
        # Without a supervisor key given, no such key exists.
        assert_refused(httpx.get(f"{lb.url}/stats", headers=bearer("sup-key")), 401, "native")
