"""Shared fixtures: full-size random-weight checkpoints, built once and cached outside the repo."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from server.engine.loading import LoadedModel, ModelVariant, load_model
from server.engine.memory import give_memory_back
from server.engine.types import Audio
from server.worker import set_tf32

CACHE = Path(
    os.environ.get("CHATTERBOX_TEST_CACHE", Path.home() / ".cache" / "chatterbox-streaming")
)
# Where the model tests run: `cpu` here and in CI, `cuda` on a GPU machine (scripts/gpu_check.sh).
TEST_DEVICE = torch.device(os.environ.get("CHATTERBOX_TEST_DEVICE", "cpu"))
ON_CUDA = TEST_DEVICE.type == "cuda"
# The oneDNN packed kernels are a CPU path (cpu_kernels.py): elsewhere the fixture that asks
# for them gets the plain model.
CPU_KERNELS = TEST_DEVICE.type == "cpu"

if ON_CUDA:
    # A computation repeated on the same shapes gives the same bits on the CPU, and the tests
    # rely on it (a stream's audio depends only on its seed). On CUDA that needs cuBLAS's
    # workspace setting, read at its first call, and torch's deterministic kernels (cuDNN's
    # convolutions among them); warn_only: an op without one warns instead of failing.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    # Full float32, as on the CPU: the tolerances are for sums in another order, not for TF32's
    # 10-bit mantissa (which the worker turns on for speed: server/worker.py).
    set_tf32(False)

# cuBLAS and cuDNN choose kernels by shape: a row computed in a batch of two, or by upstream's
# differently arranged call, sums in another order than alone and agrees to ~1e-6 of its scale
# instead of bit for bit. Comparisons exact (or within 1e-5) on the CPU allow this much on
# CUDA, relative to the largest value compared: still far below any real mismatch (another
# token, frame or noise changes values by their own size).
CUDA_RELATIVE_TOLERANCE = 1e-4


def device_atol(cpu_atol: float, reference: torch.Tensor | Audio) -> float:
    """`cpu_atol` on the CPU; on CUDA at least CUDA_RELATIVE_TOLERANCE of the largest
    magnitude in `reference`."""
    if not ON_CUDA:
        return cpu_atol
    if isinstance(reference, torch.Tensor):
        scale = float(reference.detach().abs().max())
    else:
        scale = float(np.abs(reference).max())
    return max(cpu_atol, CUDA_RELATIVE_TOLERANCE * scale)


@pytest.fixture(scope="module", autouse=True)
def _give_memory_back() -> Iterator[None]:
    """After each module, free what its fixtures held and hand the pages back to the system
    (server/engine/memory.py): without it each module's models stayed in the process's memory
    (about 2 GiB a module here) and the suite ran out of a 24 GiB machine."""
    yield
    give_memory_back()


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


@pytest.fixture(scope="module")  # as `original_model`: one module uses it
def turbo_model_cpu_kernels(turbo_dir: Path) -> Iterator[LoadedModel]:
    """Turbo as the worker runs it on the CPU (oneDNN kernels, see cpu_kernels.py)."""
    yield load_model(ModelVariant.TURBO, turbo_dir, TEST_DEVICE, cpu_kernels=CPU_KERNELS)


# Per module: the few modules that need the original model free it when they end. Held for the
# whole session beside Turbo (twice), the multilingual model and upstream's copies, it took the
# suite past a 24 GiB machine's memory; our loader takes seconds, so loading it again is cheap.
@pytest.fixture(scope="module")
def original_model(original_dir: Path) -> Iterator[LoadedModel]:
    yield load_model(ModelVariant.ORIGINAL, original_dir, TEST_DEVICE, cpu_kernels=False)
