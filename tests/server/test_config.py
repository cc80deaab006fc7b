"""The worker's configuration from flags and environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import parse_config
from server.engine.loading import ModelVariant


def test_defaults() -> None:
    config = parse_config([], env={})
    assert config.port == 6093 and config.model is ModelVariant.TURBO
    assert config.max_text_chars == 4096 and config.watermark
    assert config.device in ("cpu", "cuda:0")


def test_environment_then_flags() -> None:
    env = {"API_PORT": "7000", "CKPT_DIR": "/ckpt", "WATERMARK": "0", "DEVICE": "cuda:1"}
    config = parse_config([], env=env)
    assert config.port == 7000 and config.ckpt_dir == Path("/ckpt")
    assert not config.watermark and config.device == "cuda:1"
    config = parse_config(["--port", "7001", "--watermark", "--model", "original"], env=env)
    assert config.port == 7001 and config.watermark and config.model is ModelVariant.ORIGINAL


def test_nonsense_limits_are_rejected() -> None:
    with pytest.raises(SystemExit):
        parse_config(["--max-streams", "0"], env={})


def test_a_worker_batches_four_streams_by_default_and_admits_as_many() -> None:
    config = parse_config([], env={})
    assert (config.max_batch, config.max_streams, config.cpu_kernels) == (4, 4, True)
    serial = parse_config(["--max-batch", "1", "--no-cpu-kernels"], env={})
    assert (serial.max_batch, serial.max_streams, serial.cpu_kernels) == (1, 1, False)
    assert parse_config([], env={"MAX_BATCH": "8", "CPU_KERNELS": "0"}).max_streams == 8
