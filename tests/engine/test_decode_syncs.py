"""A batched decode step reads the device back once, for every stream together, and copies
nothing to it: on a GPU each read waits for the device to finish all it was given, and each
copy from the host waits too. On tiny T3s (`tiny_t3.py`): no checkpoint.

On the CPU the reads are counted where Python asks for them (`tolist`, `int(tensor)`, `if
tensor:`...); on CUDA, torch's own sync detection also sees those made inside operators."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

import pytest
import torch

from server.engine.loading import ModelVariant
from server.engine.sampling import ORIGINAL_DEFAULTS, TURBO_DEFAULTS, SamplingParams
from server.engine.t3_batch import OriginalBatch, T3Batch, TurboBatch
from tests.conftest import ON_CUDA, TEST_DEVICE
from tests.engine.tiny_t3 import conditioning, text_tokens, tiny_t3

# Tensor methods that read values back to the host.
READS = (
    "item",
    "tolist",
    "__int__",
    "__float__",
    "__bool__",
    "__index__",
    "cpu",
    "numpy",
    "nonzero",
    "equal",
    "allclose",
    "unique",
    "masked_select",
)
# torch functions that do (or copy from the host, when given data and a device).
TORCH_READS = ("nonzero", "equal", "allclose", "unique", "masked_select", "is_nonzero")
TORCH_COPIES = ("tensor", "as_tensor")


@pytest.fixture(scope="module")
def turbo_t3() -> Any:
    return tiny_t3(ModelVariant.TURBO)


@pytest.fixture(scope="module")
def original_t3() -> Any:
    return tiny_t3(ModelVariant.MULTILINGUAL)


def _fill(batch: T3Batch, params: list[SamplingParams]) -> None:
    """A stream per entry of `params`, prompts of different lengths (padded rows)."""
    t3_cond = conditioning()
    for index, stream_params in enumerate(params):
        generator = torch.Generator(device=TEST_DEVICE).manual_seed(index)
        batch.add(index, t3_cond, text_tokens(batch.t3, 6 + 5 * index), stream_params, generator)
        batch.step()


@contextmanager
def _counting() -> Iterator[tuple[list[str], list[str]]]:
    """(reads back to the host, copies to the device) made while inside."""
    reads: list[str] = []
    copies: list[str] = []

    def counted(record: list[str], name: str, original: Callable[..., Any]) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            record.append(name)
            return original(*args, **kwargs)

        return call

    def copy(name: str, original: Callable[..., Any]) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("device") is not None:
                copies.append(name)
            return original(*args, **kwargs)

        return call

    def moved(record: list[str], original: Callable[..., Any]) -> Any:
        def call(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            result = original(tensor, *args, **kwargs)
            if tensor.device.type != "cpu" and result.device.type == "cpu":
                record.append("to")
            return result

        return call

    with ExitStack() as stack:
        for name in READS:
            original = getattr(torch.Tensor, name)
            stack.enter_context(
                mock.patch.object(torch.Tensor, name, counted(reads, name, original))
            )
        for name in TORCH_READS:
            original = getattr(torch, name)
            stack.enter_context(mock.patch.object(torch, name, counted(reads, name, original)))
        for name in TORCH_COPIES:
            stack.enter_context(mock.patch.object(torch, name, copy(name, getattr(torch, name))))
        stack.enter_context(mock.patch.object(torch.Tensor, "to", moved(reads, torch.Tensor.to)))
        yield reads, copies


CASES = {
    "turbo": (TurboBatch, {}, [TURBO_DEFAULTS] * 3),
    # Guidance (two cache rows) and not, parameters shared and not.
    "original": (
        OriginalBatch,
        {},
        [ORIGINAL_DEFAULTS, ORIGINAL_DEFAULTS, SamplingParams(cfg_weight=0.0, min_p=0.1)],
    ),
    "multilingual": (OriginalBatch, {"alignment_checks": True}, [ORIGINAL_DEFAULTS] * 3),
}


def _batch(case: str, request: pytest.FixtureRequest) -> tuple[T3Batch, list[SamplingParams]]:
    batch_type, options, params = CASES[case]
    t3 = request.getfixturevalue("turbo_t3" if batch_type is TurboBatch else "original_t3")
    return batch_type(t3, **options), params


@pytest.mark.parametrize("case", list(CASES))
def test_a_step_of_three_streams_reads_back_once(case: str, request: pytest.FixtureRequest) -> None:
    batch, params = _batch(case, request)
    _fill(batch, params)
    for _ in range(3):
        with _counting() as (reads, copies):
            tokens = batch.step()
        assert len(tokens) == 3
        assert reads == ["tolist"]
        assert copies == []
    # A stream leaving rearranges the batch; the steps after it read back once too.
    batch.remove(1)
    with _counting() as (reads, copies):
        batch.step()
    assert (reads, copies) == (["tolist"], [])


@pytest.mark.skipif(not ON_CUDA, reason="torch's sync detection is CUDA's")
@pytest.mark.parametrize("case", list(CASES))
def test_a_step_of_three_streams_synchronizes_with_cuda_once(
    case: str, request: pytest.FixtureRequest
) -> None:
    batch, params = _batch(case, request)
    _fill(batch, params)
    batch.step()
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            batch.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == 1, [str(w.message) for w in syncs]
