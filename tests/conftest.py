"""Shared fixtures: full-size random-weight checkpoints, built once and cached outside the repo."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from server.engine.loading import LoadedModel, ModelVariant, load_model

CACHE = Path(
    os.environ.get("CHATTERBOX_TEST_CACHE", Path.home() / ".cache" / "chatterbox-streaming")
)
# Where the model tests run: `cpu` here and in CI, `cuda` on a GPU machine (scripts/gpu_check.sh).
TEST_DEVICE = torch.device(os.environ.get("CHATTERBOX_TEST_DEVICE", "cpu"))
# The oneDNN packed kernels are a CPU path (cpu_kernels.py): elsewhere the fixture that asks
# for them gets the plain model.
CPU_KERNELS = TEST_DEVICE.type == "cpu"


def checkpoint_dir(variant: ModelVariant) -> Path:
    from server.engine.random_checkpoint import build_random_checkpoint

    return build_random_checkpoint(variant.value, CACHE / "checkpoints" / variant.value)


@pytest.fixture(scope="session")
def turbo_dir() -> Path:
    return checkpoint_dir(ModelVariant.TURBO)


@pytest.fixture(scope="session")
def original_dir() -> Path:
    return checkpoint_dir(ModelVariant.ORIGINAL)


@pytest.fixture(scope="session")
def turbo_model(turbo_dir: Path) -> Iterator[LoadedModel]:
    yield load_model(ModelVariant.TURBO, turbo_dir, TEST_DEVICE, cpu_kernels=False)


@pytest.fixture(scope="session")
def turbo_model_cpu_kernels(turbo_dir: Path) -> Iterator[LoadedModel]:
    """Turbo as the worker runs it on the CPU (oneDNN kernels, see cpu_kernels.py)."""
    yield load_model(ModelVariant.TURBO, turbo_dir, TEST_DEVICE, cpu_kernels=CPU_KERNELS)


@pytest.fixture(scope="session")
def original_model(original_dir: Path) -> Iterator[LoadedModel]:
    yield load_model(ModelVariant.ORIGINAL, original_dir, TEST_DEVICE, cpu_kernels=False)
