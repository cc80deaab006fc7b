"""A worker serving clients directly with `--api-keys-file`: every endpoint kind with no key,
a wrong key, a user key and an admin key; each API's error shape; the browser's token flow;
the per-key stream limit and its release on every path; and no keys file, open as before."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from access.gate import Gatekeeper
from server.app import create_app
from server.config import ServerConfig
from tests.access_checks import (
    ADMIN_KEY,
    ENDPOINTS,
    SOCKETS,
    SOLO_KEY,
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
    wait_until,
    write_keys,
)
from tests.fakes import FakeEngine
from tests.live_server import LiveServer
from tests.server.conftest import wait_ready


@dataclass
class KeyedWorker:
    url: str
    fake: FakeEngine
    gatekeeper: Gatekeeper

    def solo_streams(self) -> int:
        return self.gatekeeper.counters.of("solo").streams_open


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedWorker]:
    work = tmp_path_factory.mktemp("keyed-worker")
    config = ServerConfig(
        voices_dir=work / "voices",
        api_keys_file=write_keys(work / "keys.toml"),
        max_streams=4,
        max_queue=4,
        max_batch=4,
        warmup=False,
    )
    fake = FakeEngine()
    app = create_app(config, lambda: fake)
    with LiveServer(app) as live:
        wait_ready(live.url)
        yield KeyedWorker(live.url, fake, app.state.gatekeeper)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_http_endpoints_need_the_right_key(keyed: KeyedWorker, endpoint: Endpoint) -> None:
    check_endpoint(keyed.url, endpoint)


@pytest.mark.parametrize("socket", SOCKETS, ids=lambda s: s.path.split("?")[0])
def test_sockets_need_a_key_or_a_token_before_the_handshake(
    keyed: KeyedWorker, socket: Socket
) -> None:
    check_socket(keyed.url, socket)


def test_only_a_key_in_a_header_mints_a_token(keyed: KeyedWorker) -> None:
    check_token_minting(keyed.url)


def test_health_stays_open_and_metrics_can_be_restricted(keyed: KeyedWorker) -> None:
    assert httpx.get(f"{keyed.url}/health").json()["status"] == "ready"
    assert httpx.get(f"{keyed.url}/metrics").status_code == 200
    keyed.gatekeeper.restrict_ops = True
    try:
        assert httpx.get(f"{keyed.url}/health").status_code == 200
        assert_refused(httpx.get(f"{keyed.url}/metrics"), 401, "native")
        assert_refused(httpx.get(f"{keyed.url}/metrics", headers=bearer(USER_KEY)), 403, "native")
        admin = httpx.get(f"{keyed.url}/metrics", headers=bearer(ADMIN_KEY))
        assert admin.status_code == 200 and "tts_requests" in admin.text
    finally:
        keyed.gatekeeper.restrict_ops = False


def test_a_keys_streams_are_limited_and_freed_when_a_socket_closes(keyed: KeyedWorker) -> None:
    check_stream_limit(keyed.url, keyed.solo_streams)
    usage = keyed.gatekeeper.counters.of("solo")
    assert usage.over_limit >= 5 and usage.streams_open == 0


def test_a_stream_the_client_leaves_frees_its_slot(keyed: KeyedWorker) -> None:
    fake = keyed.fake
    chunks, delay = fake.chunks, fake.delay
    fake.chunks, fake.delay = 200, 0.05  # 10 s: the client leaves long before
    try:
        check_release_on_disconnect(keyed.url, keyed.solo_streams)
    finally:
        fake.chunks, fake.delay = chunks, delay


def test_a_stream_that_fails_frees_its_slot(keyed: KeyedWorker) -> None:
    keyed.fake.fail_after = 1
    try:
        for _ in range(2):  # the second is let in only if the first gave its slot back
            response = httpx.post(
                f"{keyed.url}/synthesize-stream",
                data={"text": "Breaks."},
                headers=bearer(SOLO_KEY),
                timeout=30,
            )
            assert response.status_code == 200 and "event: error" in response.text
            wait_until(lambda: keyed.solo_streams() == 0, "the failed stream's slot")
    finally:
        keyed.fake.fail_after = None


def test_logs_name_the_key_and_never_show_it(
    keyed: KeyedWorker, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO"):
        httpx.post(f"{keyed.url}/synthesize", data={"text": "Hi."}, headers=bearer(USER_KEY))
        httpx.post(f"{keyed.url}/synthesize", data={"text": "Hi."}, headers=bearer("nope-" * 6))
    text = caplog.text
    assert "synthesize ok" in text and "key=user" in text
    assert "401 POST /synthesize" in text and "invalid API key" in text
    assert USER_KEY not in text and "nope-" not in text


def test_without_a_keys_file_the_worker_is_open(tmp_path: Path) -> None:
    config = ServerConfig(voices_dir=tmp_path / "voices", warmup=False)
    app = create_app(config, FakeEngine)
    assert app.state.gatekeeper is None
    with LiveServer(app) as live:
        wait_ready(live.url)
        assert httpx.post(f"{live.url}/synthesize", data={"text": "Hi."}).status_code == 200
        assert httpx.get(f"{live.url}/voices", headers=bearer("anything")).status_code == 200
        # Nothing answers the token endpoint: the web app then opens sockets without one.
        assert httpx.post(f"{live.url}/v1/auth/ws-token").status_code == 404


def test_a_bad_keys_file_stops_the_worker_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.__main__ import main

    bad = tmp_path / "keys.toml"
    bad.write_text('[[keys]]\nname = "x"\nrole = "root"\nkey = "k"\n')
    assert main(["--api-keys-file", str(bad), "--device", "cpu"]) == 2
    assert "role must be one of user, admin" in capsys.readouterr().err
    config = replace(ServerConfig(), api_keys_file=tmp_path / "missing.toml")
    with pytest.raises(ValueError, match="cannot read"):
        create_app(config, FakeEngine)
