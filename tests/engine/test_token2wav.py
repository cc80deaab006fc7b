"""Incremental token-to-wave: offline length, no seams, upstream's finalize crash fixed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scripts.seam_metrics import join_offsets, seam_figures
from server.engine.conditionals import builtin_voice
from server.engine.loading import LoadedModel
from server.engine.token2wav import (
    MEL_FRAMES_PER_TOKEN,
    SAMPLES_PER_MEL_FRAME,
    FlowInput,
    FlowPrompt,
    NoiseTape,
    Token2WavStreamer,
    flow_mel,
    flow_mel_together,
)
from server.engine.types import Audio
from tests.conftest import ON_CUDA, TEST_DEVICE, device_atol


def test_noise_tape_gives_each_frame_the_same_noise_however_sliced() -> None:
    tape = NoiseTape(5, TEST_DEVICE)
    whole = tape.frames(0, 3000)
    assert whole.device.type == TEST_DEVICE.type
    assert torch.equal(NoiseTape(5, TEST_DEVICE).frames(1500, 2100), whole[:, :, 1500:2100])
    assert torch.equal(tape.frames(10, 20), whole[:, :, 10:20])
    assert not torch.equal(NoiseTape(6, TEST_DEVICE).frames(0, 10), whole[:, :, :10])
    # The noise is drawn on the CPU: every device gets the same values.
    assert torch.equal(NoiseTape(5, torch.device("cpu")).frames(0, 3000), whole.cpu())


def _streamer(
    model: LoadedModel, seed: int, reference: int | None = None, context: int = 50
) -> Token2WavStreamer:
    voice = builtin_voice(model)
    assert voice is not None
    _, ref = voice.for_request(0.5, model.device)
    return Token2WavStreamer(
        model.s3gen,
        ref,
        NoiseTape(seed, model.device),
        meanflow=True,
        n_timesteps=2,
        reference_tokens=reference,
        context_tokens=context,
    )


def _random_tokens(count: int, seed: int, device: torch.device) -> torch.Tensor:
    # Drawn on the CPU, so that every device decodes the same tokens.
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 6561, (count,), generator=generator).to(device)


def _stream(streamer: Token2WavStreamer, tokens: torch.Tensor, ends: list[int]) -> list[Audio]:
    chunks = [streamer.decode(tokens[:end], finalize=False).cpu().numpy() for end in ends]
    chunks.append(streamer.decode(tokens, finalize=True).cpu().numpy())
    return chunks


@pytest.mark.model
def test_flow_without_finalize_holds_back_the_lookahead(turbo_model: LoadedModel) -> None:
    # Upstream 0.1.7 crashes here (h truncated, h_masks not).
    streamer = _streamer(turbo_model, seed=0)
    partial = streamer.decode(_random_tokens(20, 0, turbo_model.device), finalize=False)
    # 17 tokens' frames, less the 8 frames held back for the vocoder crossfade.
    assert partial.shape == ((20 - 3) * MEL_FRAMES_PER_TOKEN * SAMPLES_PER_MEL_FRAME - 3840,)


@pytest.mark.model
def test_first_call_with_whole_prompt_is_upstream_flow(
    turbo_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the same starting noise, our flow call computes exactly what upstream's does.
    from chatterbox.models.s3gen.s3gen import S3Token2Mel

    voice = builtin_voice(turbo_model)
    assert voice is not None
    _, ref = voice.for_request(0.5, turbo_model.device)
    tokens = _random_tokens(30, 4, turbo_model.device)
    prompt_frames = ref["prompt_feat"].shape[1]
    noise = NoiseTape(9, turbo_model.device).frames(0, prompt_frames + 60)
    # Upstream draws the prompt part of its starting noise with randn_like.
    monkeypatch.setattr(torch, "randn_like", lambda x, **_: noise.clone())
    upstream = S3Token2Mel.forward(
        turbo_model.s3gen,
        tokens,
        ref_wav=None,
        ref_sr=None,
        ref_dict=dict(ref),
        n_cfm_timesteps=2,
        finalize=True,
        noised_mels=noise[:, :, prompt_frames:],
    )
    monkeypatch.undo()
    ours = flow_mel(
        turbo_model.s3gen,
        FlowPrompt(ref["prompt_token"], ref["prompt_feat"], noise[:, :, :prompt_frames]),
        ref["embedding"],
        tokens.unsqueeze(0),
        noise[:, :, prompt_frames:],
        finalize=True,
        n_timesteps=2,
        meanflow=True,
    )
    assert ours.shape == upstream.shape == (1, 80, 60)
    assert torch.allclose(ours, upstream, atol=device_atol(1e-5, upstream))


@pytest.mark.model
def test_streamed_audio_has_offline_length_and_no_seams(turbo_model: LoadedModel) -> None:
    tokens = _random_tokens(75, 1, turbo_model.device)
    streamer = _streamer(turbo_model, seed=3, reference=100, context=20)
    chunks = _stream(streamer, tokens, [13, 33, 53])
    streamed = np.concatenate(chunks)
    offline = _streamer(turbo_model, seed=3).decode_offline(tokens).cpu().numpy()

    assert streamed.size == offline.size == 75 * MEL_FRAMES_PER_TOKEN * SAMPLES_PER_MEL_FRAME
    assert streamer.flow_calls == 4
    figures = seam_figures(streamed, offline, join_offsets([c.size for c in chunks]))
    assert figures.join_energy_ratio > 0.7
    assert figures.seam_lsd_db < 1.3 * figures.body_lsd_db


@pytest.mark.model
def test_chunk_cost_does_not_grow_with_the_stream(turbo_model: LoadedModel) -> None:
    # Each call sees at most reference + context + hop + lookahead tokens.
    seen: list[int] = []
    streamer = _streamer(turbo_model, seed=4, reference=40, context=10)
    original = streamer.s3gen.flow.encoder.forward

    def spy(xs: torch.Tensor, *args: object, **kwargs: object) -> object:
        seen.append(xs.shape[1])
        return original(xs, *args, **kwargs)

    streamer.s3gen.flow.encoder.forward = spy
    try:
        chunks = _stream(streamer, _random_tokens(90, 2, turbo_model.device), [23, 43, 63, 83])
    finally:
        del streamer.s3gen.flow.encoder.forward
    assert sum(c.size for c in chunks) == 90 * MEL_FRAMES_PER_TOKEN * SAMPLES_PER_MEL_FRAME
    assert max(seen) <= 40 + 10 + 20 + 3 and len(seen) == 5


@pytest.mark.model
def test_decoding_after_the_final_chunk_is_an_error(turbo_model: LoadedModel) -> None:
    streamer = _streamer(turbo_model, seed=0)
    tokens = _random_tokens(8, 0, turbo_model.device)
    streamer.decode(tokens, finalize=True)
    with pytest.raises(RuntimeError):
        streamer.decode(tokens, finalize=True)


@pytest.mark.model
def test_a_streams_audio_depends_only_on_its_seed_and_tokens(turbo_model: LoadedModel) -> None:
    # HiFT draws noise from the global generator; other work on the device must not change
    # a stream's audio, and the global generators are left as they were. (Bit for bit on CUDA
    # too: conftest.py asks for deterministic kernels.)
    tokens = _random_tokens(40, 3, turbo_model.device)
    first = _stream(_streamer(turbo_model, 11), tokens, [20])
    torch.manual_seed(1234)
    before = _global_rng_states()
    second = _stream(_streamer(turbo_model, 11), tokens, [20])
    for now, then in zip(_global_rng_states(), before, strict=True):
        assert torch.equal(now, then)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a, b)
    other = _stream(_streamer(turbo_model, 12), tokens, [20])
    assert not np.array_equal(other[0], first[0])


def _global_rng_states() -> list[torch.Tensor]:
    return [torch.get_rng_state(), *([torch.cuda.get_rng_state()] if ON_CUDA else [])]


@pytest.mark.model
def test_streams_sharing_a_flow_call_get_their_own_audio(turbo_model: LoadedModel) -> None:
    # Two streams (own noise, own tokens), each one chunk in: their next chunks computed in
    # one batched flow call equal the chunks each computes alone, up to summation order.
    def started(seed: int) -> tuple[Token2WavStreamer, torch.Tensor]:
        streamer = _streamer(turbo_model, seed, reference=100, context=50)
        tokens = _random_tokens(60, seed, turbo_model.device)
        streamer.decode(tokens[:20], finalize=False)
        return streamer, tokens

    alone = [started(seed) for seed in (1, 2)]
    together = [started(seed) for seed in (1, 2)]
    solo = [streamer.decode(tokens[:50], finalize=False) for streamer, tokens in alone]
    inputs = [streamer.flow_input(tokens[:50]) for streamer, tokens in together]
    assert inputs[0].shape == inputs[1].shape
    mels = flow_mel_together(
        turbo_model.s3gen, inputs, finalize=False, n_timesteps=2, meanflow=True
    )
    shared = [
        streamer.continue_with(mel, finalize=False)
        for (streamer, _), mel in zip(together, mels, strict=True)
    ]
    for mine, theirs in zip(shared, solo, strict=True):
        assert mine.shape == theirs.shape
        assert torch.allclose(mine, theirs, atol=1e-4 * float(theirs.abs().max()))
    assert not torch.allclose(shared[0], shared[1])
    # And they carry on alike: the final chunks match too.
    for (streamer, tokens), (solo_streamer, _) in zip(together, alone, strict=True):
        last, solo_last = (
            streamer.decode(tokens, finalize=True),
            solo_streamer.decode(tokens, finalize=True),
        )
        assert torch.allclose(last, solo_last, atol=1e-4 * float(solo_last.abs().max()))


def test_flow_inputs_of_different_shapes_cannot_share_a_call() -> None:
    def flow_input(new_tokens: int) -> FlowInput:
        prompt = FlowPrompt(
            torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 8, 80), torch.zeros(1, 80, 8)
        )
        return FlowInput(
            prompt,
            torch.zeros(192),
            torch.zeros(1, new_tokens, dtype=torch.long),
            torch.zeros(1, 80, 2 * new_tokens),
        )

    with pytest.raises(ValueError, match="different shapes"):
        flow_mel_together(
            None, [flow_input(5), flow_input(6)], finalize=False, n_timesteps=2, meanflow=True
        )
