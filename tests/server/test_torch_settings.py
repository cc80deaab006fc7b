"""The worker's process-wide torch settings (CPU threads and TF32) and its model dtype, by
device."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import torch

from server import __main__ as server_main
from server import worker as worker_module
from server.config import DEFAULT_CUDA_THREADS, ServerConfig, parse_config
from server.engine.loading import ModelDtype
from server.worker import Worker, apply_torch_settings
from tests.fakes import FakeEngine


def test_threads_and_tf32_from_flags_and_environment() -> None:
    config = parse_config(["--device", "cpu"], env={})
    assert (config.threads, config.tf32) == (None, True)
    assert parse_config(["--threads", "3", "--no-tf32"], env={}).threads == 3
    assert not parse_config(["--no-tf32"], env={}).tf32
    env = {"CHATTERBOX_THREADS": "6", "CHATTERBOX_TF32": "off"}
    from_env = parse_config([], env=env)
    assert (from_env.threads, from_env.tf32) == (6, False)
    assert parse_config(["--threads", "2"], env=env).threads == 2


@pytest.mark.parametrize("argv", [["--threads", "0"], ["--threads", "-2"], ["--threads", "x"]])
def test_nonsense_thread_counts_are_rejected(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(argv, env={})


def test_a_cuda_worker_takes_a_few_threads_and_a_cpu_worker_torchs_own() -> None:
    assert ServerConfig(device="cuda:0").torch_threads() == DEFAULT_CUDA_THREADS == 4
    assert ServerConfig(device="cuda").torch_threads() == DEFAULT_CUDA_THREADS
    assert ServerConfig(device="cpu").torch_threads() is None
    assert ServerConfig(device="cpu", threads=2).torch_threads() == 2
    assert ServerConfig(device="cuda:1", threads=8).torch_threads() == 8


def test_the_model_dtype_is_float32_on_the_cpu_and_bfloat16_on_cuda_unless_asked() -> None:
    assert ServerConfig(device="cpu").model_dtype() is ModelDtype.FLOAT32
    assert ServerConfig(device="cuda:1").model_dtype() is ModelDtype.BFLOAT16
    assert ServerConfig(device="cuda", dtype=ModelDtype.FLOAT32).model_dtype() is ModelDtype.FLOAT32
    assert (
        ServerConfig(device="cpu", dtype=ModelDtype.BFLOAT16).model_dtype() is ModelDtype.BFLOAT16
    )
    assert parse_config(["--dtype", "Float16"], env={}).dtype is ModelDtype.FLOAT16
    assert parse_config([], env={"CHATTERBOX_DTYPE": "bfloat16"}).dtype is ModelDtype.BFLOAT16
    assert parse_config([], env={}).dtype is None


@pytest.mark.parametrize("argv", [["--dtype", "fp8"], ["--dtype", "half"], ["--dtype", ""]])
def test_unknown_dtypes_are_rejected(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(argv, env={})


def test_the_worker_loads_its_model_in_the_configured_dtype(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads: list[dict[str, Any]] = []

    def load_model(*args: Any, **kwargs: Any) -> Any:
        loads.append(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(server_main, "load_model", load_model)
    for config, expected in [
        (ServerConfig(device="cpu"), torch.float32),
        (ServerConfig(device="cuda:0"), torch.bfloat16),
        (ServerConfig(device="cuda:0", dtype=ModelDtype.FLOAT16), torch.float16),
    ]:
        with pytest.raises(RuntimeError, match="stop here"):
            server_main.engine_factory(config)
        assert loads[-1]["dtype"] is expected


class Recorder:
    """Stands in for torch's setters: what was set, without changing this process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.calls: list[tuple[str, Any]] = []
        monkeypatch.setattr(torch, "set_num_threads", lambda n: self.calls.append(("threads", n)))
        monkeypatch.setattr(worker_module, "set_tf32", lambda on: self.calls.append(("tf32", on)))


def test_the_cpu_path_leaves_torch_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(monkeypatch)
    assert apply_torch_settings(ServerConfig(device="cpu")) == []
    assert apply_torch_settings(ServerConfig(device="cpu", tf32=True)) == []
    assert recorder.calls == []
    # Only what is asked for: a thread count, still no TF32.
    assert apply_torch_settings(ServerConfig(device="cpu", threads=2)) == ["2 CPU threads"]
    assert recorder.calls == [("threads", 2)]


def test_a_cuda_worker_sets_threads_and_tf32(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(monkeypatch)
    assert len(apply_torch_settings(ServerConfig(device="cuda:0"))) == 2
    assert recorder.calls == [("threads", DEFAULT_CUDA_THREADS), ("tf32", True)]
    recorder.calls.clear()
    apply_torch_settings(ServerConfig(device="cuda:0", threads=2, tf32=False))
    assert recorder.calls == [("threads", 2)]


def test_tf32_flags_through_this_torchs_api() -> None:
    # Setting the flags needs no GPU; they are put back as they were.
    matmul: Any = torch.backends.cuda.matmul
    cudnn: Any = torch.backends.cudnn
    if hasattr(matmul, "fp32_precision"):  # torch 2.9 and later
        before = (matmul.fp32_precision, cudnn.conv.fp32_precision)
        try:
            worker_module.set_tf32(True)
            assert (matmul.fp32_precision, cudnn.conv.fp32_precision) == ("tf32", "tf32")
            worker_module.set_tf32(False)
            assert (matmul.fp32_precision, cudnn.conv.fp32_precision) == ("ieee", "ieee")
        finally:
            matmul.fp32_precision, cudnn.conv.fp32_precision = before
        return
    flags = (matmul.allow_tf32, cudnn.allow_tf32, torch.get_float32_matmul_precision())
    try:
        worker_module.set_tf32(True)
        assert matmul.allow_tf32 and cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "high"
        worker_module.set_tf32(False)
        assert not matmul.allow_tf32 and not cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = flags[:2]
        torch.set_float32_matmul_precision(flags[2])


def test_settings_are_applied_on_the_device_thread_before_the_model_loads(
    base_config: ServerConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[tuple[str, int]] = []

    def settings(config: ServerConfig) -> list[str]:
        order.append(("settings", threading.get_ident()))
        return []

    monkeypatch.setattr(worker_module, "apply_torch_settings", settings)

    def factory() -> FakeEngine:
        order.append(("model", threading.get_ident()))
        return FakeEngine(chunks=1, delay=0.0)

    worker = Worker(base_config, factory)
    try:
        asyncio.run(worker.load())
    finally:
        worker.close()
    assert [what for what, _ in order] == ["settings", "model"]
    assert order[0][1] == order[1][1] != threading.get_ident()


def _tf32_state() -> tuple[object, ...]:
    matmul: Any = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        cudnn: Any = torch.backends.cudnn
        return (matmul.fp32_precision, cudnn.conv.fp32_precision)
    return (
        matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
    )


def test_a_cpu_worker_starting_changes_no_torch_setting(base_config: ServerConfig) -> None:
    before = (torch.get_num_threads(), _tf32_state())
    worker = Worker(base_config, lambda: FakeEngine(chunks=1, delay=0.0))
    try:
        asyncio.run(worker.load())
    finally:
        worker.close()
    assert worker.runner is not None
    assert (torch.get_num_threads(), _tf32_state()) == before
