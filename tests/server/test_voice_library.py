"""The voice library on disk loses nothing: saves are atomic, concurrent saves of one voice
leave it whole, and damaged files are skipped with a warning naming them, never an error for
the whole library or the worker."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import torch

from server.config import ServerConfig
from server.voices import META_FILE, VOICE_FILE, VoiceLibrary, VoiceNotFoundError
from tests.audio import wav_bytes
from tests.fakes import FakeEngine, fake_voice
from tests.server.conftest import serving, wait_ready

CPU = torch.device("cpu")
T = TypeVar("T")


def hidden(root: Path) -> list[str]:
    """Staging and deletion leftovers in the library's directory."""
    return [p.name for p in root.iterdir() if p.name.startswith(".")]


def run_together(jobs: list[Callable[[], T]]) -> list[T]:
    """Run `jobs` on as many threads, all released at once."""
    start = threading.Barrier(len(jobs))

    def run(job: Callable[[], T]) -> T:
        start.wait()
        return job()

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(run, jobs))


def test_concurrent_saves_of_one_voice_leave_one_whole_voice(tmp_path: Path) -> None:
    library = VoiceLibrary(tmp_path, CPU)
    voice = fake_voice("a" * 64)
    names = ["Narrator", "narrator", "NARRATOR ", "Narrator"] * 2  # one id for all
    infos = run_together([functools.partial(library.save, n.strip(), voice, "fake") for n in names])
    assert len({info.id for info in infos}) == 1
    [saved] = library.list()
    assert saved.name.lower() == "narrator"
    assert library.load(saved.id).key == voice.key
    assert [p.name for p in tmp_path.iterdir()] == [saved.id]
    assert sorted(p.name for p in (tmp_path / saved.id).iterdir()) == [META_FILE, VOICE_FILE]


def test_readers_never_see_a_voice_half_rewritten(tmp_path: Path) -> None:
    library = VoiceLibrary(tmp_path, CPU)
    voice = fake_voice("b" * 64)
    voice_id = library.save("Reader", voice, "fake").id
    stop = threading.Event()
    problems: list[BaseException] = []

    def read() -> None:
        while not stop.is_set():
            try:
                assert library.load(voice_id).key == voice.key
                assert [v.id for v in library.list()] == [voice_id]
            except BaseException as exc:
                problems.append(exc)
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        run_together([lambda: [library.save("Reader", voice, "fake") for _ in range(10)]] * 3)
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert problems == []
    assert hidden(tmp_path) == []


def test_saves_racing_deletes_leave_all_or_nothing(tmp_path: Path) -> None:
    library = VoiceLibrary(tmp_path, CPU)
    voice = fake_voice("c" * 64)
    voice_id = library.save("Racer", voice, "fake").id

    def delete_quietly() -> None:
        for _ in range(10):
            with contextlib.suppress(VoiceNotFoundError):
                library.delete(voice_id)

    def save_repeatedly() -> None:
        for _ in range(10):
            library.save("Racer", voice, "fake")

    run_together([save_repeatedly, delete_quietly])
    left = library.list()
    assert [v.id for v in left] in ([], [voice_id])
    if left:
        assert library.load(voice_id).key == voice.key
    assert hidden(tmp_path) == []


def test_concurrent_uploads_of_one_name_over_http(
    base_config: ServerConfig, fake: FakeEngine
) -> None:
    """Through the worker: every upload succeeds and the library holds one whole voice."""
    audio = wav_bytes(6.0)
    with serving(base_config, fake) as live:
        wait_ready(live.url)

        def upload() -> int:
            files = {"audio": ("v.wav", audio, "audio/wav")}
            form = {"name": "Chorus"}
            return httpx.post(f"{live.url}/voices", data=form, files=files, timeout=60).status_code

        assert run_together([upload] * 6) == [201] * 6
        [voice] = httpx.get(f"{live.url}/voices").json()["voices"]
        form = {"text": "Hi.", "voice": "Chorus"}
        assert httpx.post(f"{live.url}/synthesize", data=form, timeout=30).status_code == 200
    assert [p.name for p in base_config.voices_dir.iterdir()] == [voice["id"]]


def damage(root: Path, good_id: str) -> dict[str, Path]:
    """Every kind of damage a directory of voices can suffer; the file each warning names."""
    good = root / good_id

    def voice_dir(name: str, meta: bytes | None, voice: bytes | None) -> Path:
        folder = root / name
        folder.mkdir()
        if meta is not None:
            (folder / META_FILE).write_bytes(meta)
        if voice is not None:
            (folder / VOICE_FILE).write_bytes(voice)
        return folder

    whole = (good / VOICE_FILE).read_bytes()

    def meta(voice_id: str, **changes: object) -> bytes:
        info = json.loads((good / META_FILE).read_text())
        return json.dumps({**info, "id": voice_id, **changes}).encode()

    (root / "stray-file.bin").write_bytes(b"\x00garbage")
    (root / ".incoming-crashed").mkdir()
    (root / ".incoming-crashed" / VOICE_FILE).write_bytes(whole[:100])
    return {
        "truncated": voice_dir("truncated-0001", meta("truncated-0001"), whole[: len(whole) // 2])
        / VOICE_FILE,
        "empty": voice_dir("empty-0001", meta("empty-0001"), b"") / VOICE_FILE,
        "garbage": voice_dir("garbage-0001", meta("garbage-0001"), b"PK\x03\x04 not a voice")
        / VOICE_FILE,
        "bad json": voice_dir("bad-json-0001", b'{"id": "bad-json-0001", ', whole) / META_FILE,
        "not utf-8": voice_dir("latin-0001", b'{"name": "\xe9"}', whole) / META_FILE,
        "wrong types": voice_dir("typed-0001", meta("typed-0001", created_at="yesterday"), whole)
        / META_FILE,
        "wrong id": voice_dir("moved-0001", meta("elsewhere-0001"), whole) / META_FILE,
        "no voice file": voice_dir("lonely-0001", meta("lonely-0001"), None) / META_FILE,
    }


def test_damaged_files_are_skipped_with_a_warning_at_start(
    base_config: ServerConfig, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(base_config, FakeEngine()) as first:
        wait_ready(first.url)
        files = {"audio": ("v.wav", wav_bytes(6.0), "audio/wav")}
        form = {"name": "Survivor"}
        created = httpx.post(f"{first.url}/voices", data=form, files=files, timeout=60)
        good_id = created.json()["id"]
    damaged = damage(base_config.voices_dir, good_id)

    caplog.set_level(logging.WARNING, logger="server")
    with serving(base_config, FakeEngine()) as second:
        wait_ready(second.url)  # ready means the library was checked
        warned = "\n".join(r.getMessage() for r in caplog.records)
        for kind, path in damaged.items():
            assert str(path) in warned, kind
        listed = [v["id"] for v in httpx.get(f"{second.url}/voices").json()["voices"]]
        assert listed == [good_id]
        for voice in (good_id, "Survivor"):
            form = {"text": "Hi.", "voice": voice}
            assert httpx.post(f"{second.url}/synthesize", data=form).status_code == 200
        for voice in ("truncated-0001", "garbage-0001"):
            refused = httpx.post(f"{second.url}/synthesize", data={"text": "Hi.", "voice": voice})
            assert refused.status_code == 422 and refused.json()["field"] == "voice"
    warnings = [r for r in caplog.records if str(damaged["truncated"]) in r.getMessage()]
    assert len(warnings) == 1  # once per damaged file, not once per request
