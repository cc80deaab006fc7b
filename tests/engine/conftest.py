"""The multilingual model's fixtures: its random checkpoint (once per session), our model (loaded
with the network forbidden) and upstream's, each once per module that uses it, and freed when it
ends (as tests/conftest.py's `original_model`: the suite must fit in 24 GiB)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from server.engine.loading import LoadedModel, ModelVariant, load_model
from tests.conftest import TEST_DEVICE, checkpoint_dir


@contextlib.contextmanager
def forbid_network() -> Iterator[list[str]]:
    """Every attempt to resolve a name or open a connection fails, and is recorded (code that
    swallows the failure still shows up in the list)."""
    attempts: list[str] = []

    def refuse(what: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            attempts.append(f"{what}{args[1:] if what == 'connect' else args}")
            raise OSError(f"network forbidden in this test: {what}")

        return refused

    with (
        mock.patch.object(socket.socket, "connect", refuse("connect")),
        mock.patch.object(socket.socket, "connect_ex", refuse("connect")),
        mock.patch.object(socket, "create_connection", refuse("create_connection")),
        mock.patch.object(socket, "getaddrinfo", refuse("getaddrinfo")),
    ):
        yield attempts


@dataclass(frozen=True)
class OfflineLoad:
    model: LoadedModel
    network_attempts: list[str]


@pytest.fixture(scope="session")
def multilingual_dir() -> Path:
    return checkpoint_dir(ModelVariant.MULTILINGUAL)


@pytest.fixture(scope="module")
def multilingual_load(multilingual_dir: Path) -> OfflineLoad:
    with forbid_network() as attempts:
        model = load_model(
            ModelVariant.MULTILINGUAL, multilingual_dir, TEST_DEVICE, cpu_kernels=False
        )
    return OfflineLoad(model, attempts)


@pytest.fixture(scope="module")
def multilingual_model(multilingual_load: OfflineLoad) -> LoadedModel:
    return multilingual_load.model


@pytest.fixture(scope="module")
def upstream_multilingual(multilingual_dir: Path) -> Any:
    """Upstream's `ChatterboxMultilingualTTS.from_local` on the same checkpoint (offline)."""
    from chatterbox.mtl_tts import ChatterboxMultilingualTTS

    from server.engine.random_multilingual_text import upstream_offline

    with upstream_offline(multilingual_dir):
        return ChatterboxMultilingualTTS.from_local(multilingual_dir, str(TEST_DEVICE))
