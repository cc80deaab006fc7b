"""Fast loading gives exactly upstream's parameters; the random checkpoint loads both ways."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from server.engine.loading import (
    CheckpointNotFoundError,
    LoadedModel,
    ModelVariant,
    load_model,
    resolve_checkpoint_dir,
)


def _assert_same_tensors(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    our_state = dict(ours.state_dict())
    our_state.update(dict(ours.named_buffers()))
    their_state = dict(theirs.state_dict())
    their_state.update(dict(theirs.named_buffers()))
    assert our_state.keys() == their_state.keys()
    for name, tensor in their_state.items():
        assert torch.equal(our_state[name], tensor), name


@pytest.mark.model
def test_turbo_parameters_identical_to_upstream_from_local(
    turbo_dir: Path, turbo_model: LoadedModel
) -> None:
    from chatterbox.tts_turbo import ChatterboxTurboTTS

    upstream = ChatterboxTurboTTS.from_local(turbo_dir, "cpu")
    _assert_same_tensors(turbo_model.t3, upstream.t3)
    _assert_same_tensors(turbo_model.s3gen, upstream.s3gen)
    _assert_same_tensors(turbo_model.voice_encoder, upstream.ve)
    assert turbo_model.builtin_conds is not None
    assert torch.equal(
        turbo_model.builtin_conds.gen["prompt_feat"], upstream.conds.gen["prompt_feat"]
    )
    text = "Hello there, streaming world."
    assert torch.equal(
        turbo_model.text_to_tokens(text),
        upstream.tokenizer(text, return_tensors="pt").input_ids,
    )


@pytest.mark.model
def test_original_parameters_identical_to_upstream_from_local(
    original_dir: Path, original_model: LoadedModel
) -> None:
    from chatterbox.tts import ChatterboxTTS

    upstream = ChatterboxTTS.from_local(original_dir, "cpu")
    _assert_same_tensors(original_model.t3, upstream.t3)
    _assert_same_tensors(original_model.s3gen, upstream.s3gen)
    _assert_same_tensors(original_model.voice_encoder, upstream.ve)
    text = "Hello there, streaming world."
    assert torch.equal(original_model.text_to_tokens(text), upstream.tokenizer.text_to_tokens(text))


@pytest.mark.model
def test_fast_load_skips_random_initialisation(
    turbo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Upstream spends most of its load time initialising weights it then overwrites; ours
    # must not run a single initialiser (how fast that is, bench_streaming.py measures).
    calls = []
    original = torch.nn.init.kaiming_uniform_

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.nn.init, "kaiming_uniform_", counting)
    started = time.perf_counter()
    model = load_model(ModelVariant.TURBO, turbo_dir, "cpu")
    assert calls == []
    assert 0 < model.load_seconds <= time.perf_counter() - started
    torch.nn.Linear(4, 4)  # outside loading, initialisation is back
    assert calls == [1]


def test_incomplete_directory_names_the_missing_files(tmp_path: Path) -> None:
    (tmp_path / "ve.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointNotFoundError, match=r"t3_turbo_v1\.safetensors"):
        resolve_checkpoint_dir(ModelVariant.TURBO, tmp_path)


def test_hub_without_network_fails_fast_and_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    started = time.perf_counter()
    with pytest.raises(CheckpointNotFoundError, match="--ckpt-dir"):
        resolve_checkpoint_dir(ModelVariant.ORIGINAL, None)
    assert time.perf_counter() - started < 60


def test_hub_offline_mode_fails_immediately(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(CheckpointNotFoundError, match="HF_HUB_OFFLINE"):
        resolve_checkpoint_dir(ModelVariant.TURBO, None)
    assert time.perf_counter() - started < 5
