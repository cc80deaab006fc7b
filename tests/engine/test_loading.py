"""Fast loading gives exactly upstream's parameters; the random checkpoint loads both ways."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch

from server.engine.loading import (
    LAYOUTS,
    CheckpointNotFoundError,
    LoadedModel,
    ModelDtype,
    ModelVariant,
    build_modules,
    default_dtype,
    load_model,
    resolve_checkpoint_dir,
    set_dtypes,
)
from tests.conftest import TEST_DEVICE
from tests.engine.conftest import OfflineLoad


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = dict(module.state_dict())
    state.update(dict(module.named_buffers()))
    # Upstream's T3.inference keeps its HF wrapper on T3 as a submodule (`patched_model`, the
    # same tensors again) once a test has called it, on our model or upstream's.
    return {k: v for k, v in state.items() if not k.startswith("patched_model.")}


def _assert_same_tensors(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    our_state, their_state = _tensors(ours), _tensors(theirs)
    assert our_state.keys() == their_state.keys()
    for name, tensor in their_state.items():
        assert torch.equal(our_state[name], tensor), name


@pytest.mark.model
def test_turbo_parameters_identical_to_upstream_from_local(
    turbo_dir: Path, turbo_model: LoadedModel
) -> None:
    from chatterbox.tts_turbo import ChatterboxTurboTTS

    upstream = ChatterboxTurboTTS.from_local(turbo_dir, str(TEST_DEVICE))
    _assert_same_tensors(turbo_model.t3, upstream.t3)
    _assert_same_tensors(turbo_model.s3gen, upstream.s3gen)
    _assert_same_tensors(turbo_model.voice_encoder, upstream.ve)
    assert turbo_model.builtin_conds is not None
    assert torch.equal(
        turbo_model.builtin_conds.gen["prompt_feat"], upstream.conds.gen["prompt_feat"]
    )
    text = "Hello there, streaming world."
    assert torch.equal(
        turbo_model.text_to_tokens(text).cpu(),
        upstream.tokenizer(text, return_tensors="pt").input_ids,
    )


@pytest.mark.model
def test_original_parameters_identical_to_upstream_from_local(
    original_dir: Path, original_model: LoadedModel
) -> None:
    from chatterbox.tts import ChatterboxTTS

    upstream = ChatterboxTTS.from_local(original_dir, str(TEST_DEVICE))
    _assert_same_tensors(original_model.t3, upstream.t3)
    _assert_same_tensors(original_model.s3gen, upstream.s3gen)
    _assert_same_tensors(original_model.voice_encoder, upstream.ve)
    text = "Hello there, streaming world."
    assert torch.equal(
        original_model.text_to_tokens(text).cpu(), upstream.tokenizer.text_to_tokens(text).cpu()
    )


@pytest.mark.model
def test_multilingual_parameters_identical_to_upstream_from_local(
    multilingual_model: LoadedModel, upstream_multilingual: Any
) -> None:
    upstream = upstream_multilingual
    _assert_same_tensors(multilingual_model.t3, upstream.t3)
    _assert_same_tensors(multilingual_model.s3gen, upstream.s3gen)
    _assert_same_tensors(multilingual_model.voice_encoder, upstream.ve)
    assert multilingual_model.builtin_conds is not None
    assert torch.equal(
        multilingual_model.builtin_conds.t3.speaker_emb, upstream.conds.t3.speaker_emb
    )
    assert torch.equal(
        multilingual_model.builtin_conds.gen["prompt_feat"], upstream.conds.gen["prompt_feat"]
    )
    for text, language in (("Hallo, Welt.", "de"), ("你好，世界。", "zh"), ("こんにちは。", "ja")):
        assert torch.equal(
            multilingual_model.text_to_tokens(text, language).cpu(),
            upstream.tokenizer.text_to_tokens(text, language_id=language),
        )


@pytest.mark.model
def test_multilingual_loads_without_the_network(multilingual_load: OfflineLoad) -> None:
    # The session's model was loaded with every socket refused (tests/engine/conftest.py).
    assert multilingual_load.network_attempts == []
    model = multilingual_load.model
    assert len(model.languages) == 23
    # Chinese (segmenter model and Cangjie table from the checkpoint), Japanese and Korean
    # run offline; only front-ends whose packages are missing are unavailable.
    assert {"zh", "ja", "ko"}.isdisjoint(model.unavailable_languages)
    assert set(model.unavailable_languages) <= {"he", "ru"}


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


def _dtype_of_every_tensor(**modules: torch.nn.Module) -> dict[str, torch.dtype]:
    return {
        f"{name}.{key}": tensor.dtype
        for name, module in modules.items()
        for key, tensor in [*module.named_parameters(), *module.named_buffers()]
    }


def test_the_dtype_rule_does_not_depend_on_the_device_or_the_checkpoints_dtypes() -> None:
    # The loader copies the checkpoint into float32 parameters on the CPU and adopts its
    # tensors, in whatever dtype the file holds, on CUDA (`adopts_loaded_tensors`); then
    # `set_dtypes` decides. Both starting points give the same dtypes. The original model: its
    # Llama T3 has the rotary frequencies that must stay float32. Built on the meta device
    # (dtypes without memory); imported before, as importing runs tensor code.
    import chatterbox.tts  # noqa: F401

    with torch.device("meta"):
        voice_encoder, t3, s3gen = build_modules(ModelVariant.ORIGINAL)
    found = []
    for before in (torch.float32, torch.float16):  # as built on the CPU; a half checkpoint
        for module in (voice_encoder, t3, s3gen):
            module.to(before)
        set_dtypes(voice_encoder, t3, s3gen, torch.bfloat16)
        found.append(_dtype_of_every_tensor(ve=voice_encoder, t3=t3, s3gen=s3gen))
    assert found[0] == found[1]

    def expected(name: str, dtype: torch.dtype) -> torch.dtype:
        if not dtype.is_floating_point:
            return dtype  # counters (BatchNorm's num_batches_tracked)
        if name.startswith("t3.tfmr.rotary_emb."):
            return torch.float32
        if name.startswith(("t3.", "s3gen.flow.")):
            return torch.bfloat16
        return torch.float32  # voice encoder, speech tokenizer, speaker encoder, HiFT

    assert found[0] == {name: expected(name, dtype) for name, dtype in found[0].items()}
    assert found[0]["t3.tfmr.rotary_emb.inv_freq"] == torch.float32
    with pytest.raises(ValueError, match="float64"):
        set_dtypes(voice_encoder, t3, s3gen, torch.float64)


def test_the_default_dtype_is_bfloat16_on_cuda_and_float32_on_the_cpu() -> None:
    assert default_dtype("cuda:1") is ModelDtype.BFLOAT16
    assert default_dtype(torch.device("cuda")) is ModelDtype.BFLOAT16
    assert default_dtype("cpu") is ModelDtype.FLOAT32
    assert [d.torch_dtype for d in ModelDtype] == [torch.float32, torch.bfloat16, torch.float16]


def test_incomplete_directory_names_the_missing_files(tmp_path: Path) -> None:
    (tmp_path / "ve.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointNotFoundError, match=r"t3_turbo_v1\.safetensors"):
        resolve_checkpoint_dir(ModelVariant.TURBO, tmp_path)


def test_incomplete_multilingual_directory_names_the_missing_files(tmp_path: Path) -> None:
    (tmp_path / "ve.pt").write_bytes(b"")
    with pytest.raises(
        CheckpointNotFoundError,
        match=r"t3_mtl23ls_v2\.safetensors, s3gen\.pt, grapheme_mtl_merged_expanded_v1\.json",
    ):
        resolve_checkpoint_dir(ModelVariant.MULTILINGUAL, tmp_path)


def test_hub_cache_of_one_variant_is_not_taken_for_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The original and multilingual models share a hub repository: a cache that holds only
    # the original's files is a snapshot of it too, but not a multilingual checkpoint.
    import huggingface_hub.constants

    revision = "0" * 40
    repo = tmp_path / "models--ResembleAI--chatterbox"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    for name in LAYOUTS[ModelVariant.ORIGINAL].required_files:
        (snapshot / name).write_bytes(b"")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_checkpoint_dir(ModelVariant.ORIGINAL, None) == snapshot
    with pytest.raises(CheckpointNotFoundError, match="HF_HUB_OFFLINE"):
        resolve_checkpoint_dir(ModelVariant.MULTILINGUAL, None)
    # Only each variant's own files are fetched from the shared repository.
    patterns = LAYOUTS[ModelVariant.MULTILINGUAL].hub_patterns()
    assert "t3_mtl23ls_v2.safetensors" in patterns and "Cangjie5_TC.json" in patterns
    assert not any(p.startswith("t3_cfg") for p in patterns)


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
