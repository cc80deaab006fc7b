"""The CPU kernel swaps compute what the layers they replace compute."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm
from transformers.pytorch_utils import Conv1D

from server.engine.cpu_kernels import (
    NativeConvTranspose1d,
    PackedLinear,
    packing_available,
    prepare_for_cpu,
)
from server.engine.loading import LoadedModel
from tests.conftest import TEST_DEVICE

pytestmark = pytest.mark.skipif(
    not packing_available(torch.device("cpu")), reason="this PyTorch build has no oneDNN"
)
# The kernels are a CPU path: on another device the model fixtures hold the plain model. The
# layer tests run on CPU tensors, and so on every machine.
on_the_cpu_only = pytest.mark.skipif(
    TEST_DEVICE.type != "cpu",
    reason=f"the oneDNN kernels are a CPU path; the model tests run on {TEST_DEVICE}",
)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    scale = float(b.abs().max()) or 1.0
    return float((a - b).abs().max()) <= 1e-5 * scale


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 64), (3, 64), (2, 7, 64), (300, 64)])
def test_packed_linear_equals_linear(bias: bool, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 48, bias=bias)
    packed = PackedLinear(linear.weight, linear.bias)
    x = torch.randn(*shape)
    with torch.inference_mode():
        assert close(packed(x), linear(x))
        # Inputs that are views (a transposed tensor) work too.
        xt = torch.randn(64, shape[0]).t()
        assert close(packed(xt), linear(xt))


def test_gpt2_conv1d_and_lora_compatible_linears_are_packed_with_the_same_output() -> None:
    from diffusers.models.lora import LoRACompatibleLinear

    torch.manual_seed(1)
    gpt2_linear = Conv1D(32, 16)  # type: ignore[no-untyped-call]
    model = nn.Sequential(gpt2_linear, nn.GELU(), LoRACompatibleLinear(32, 8), nn.Linear(8, 4))
    x = torch.randn(5, 16)
    with torch.inference_mode():
        expected = model(x)
    assert prepare_for_cpu(model) == 3
    assert all(isinstance(model[i], PackedLinear) for i in (0, 2, 3))
    with torch.inference_mode():
        assert close(model(x), expected)


def test_linears_are_packed_straight_from_checkpoint_tensors() -> None:
    torch.manual_seed(2)
    source = nn.Sequential(nn.Linear(16, 16), nn.LayerNorm(16), nn.Linear(16, 4, bias=False))
    state = {k: v.clone() for k, v in source.state_dict().items()}
    target = nn.Sequential(nn.Linear(16, 16), nn.LayerNorm(16), nn.Linear(16, 4, bias=False))
    assert prepare_for_cpu(target, state) == 2
    # Only what is still a parameter is left to load, and it loads strictly.
    assert sorted(state) == ["1.bias", "1.weight"]
    target.load_state_dict(state, strict=True)
    x = torch.randn(3, 16)
    with torch.inference_mode():
        assert close(target(x), source(x))


@pytest.mark.parametrize("length", [5, 58, 59, 301])
def test_native_transposed_convolution_equals_the_original_with_weight_norm(length: int) -> None:
    torch.manual_seed(3)
    conv = weight_norm(nn.ConvTranspose1d(12, 6, kernel_size=11, stride=5, padding=3))
    native = NativeConvTranspose1d(conv)
    x = torch.randn(1, 12, length)
    with torch.inference_mode():
        assert close(native(x), conv(x))


@pytest.mark.model
@on_the_cpu_only
def test_model_layers_are_all_swapped(turbo_model_cpu_kernels: LoadedModel) -> None:
    for module in (turbo_model_cpu_kernels.t3, turbo_model_cpu_kernels.s3gen):
        kinds = {type(m) for m in module.modules()}
        assert PackedLinear in kinds
        assert not kinds & {nn.Linear, Conv1D, nn.ConvTranspose1d}
    assert isinstance(turbo_model_cpu_kernels.s3gen.mel2wav.ups[0], NativeConvTranspose1d)


@pytest.mark.model
@on_the_cpu_only
def test_t3_and_flow_compute_what_upstream_modules_compute(
    turbo_model: LoadedModel, turbo_model_cpu_kernels: LoadedModel
) -> None:
    from server.engine.conditionals import builtin_voice
    from server.engine.token2wav import FlowPrompt, NoiseTape, flow_mel

    voice = builtin_voice(turbo_model)
    assert voice is not None
    t3_cond, ref = voice.for_request(0.5, turbo_model.device)
    text = turbo_model.text_to_tokens("Kernels change the order of sums, not the results.")
    outputs = []
    for model in (turbo_model, turbo_model_cpu_kernels):
        t3 = model.t3
        start = t3.hp.start_speech_token * torch.ones_like(text[:, :1])
        with torch.inference_mode():
            embeds, _ = t3.prepare_input_embeds(
                t3_cond=t3_cond, text_tokens=text, speech_tokens=start, cfg_weight=0.0
            )
            logits = t3.speech_head(t3.tfmr(inputs_embeds=embeds)[0][:, -1])
        noise = NoiseTape(7, model.device)
        prompt = FlowPrompt(
            ref["prompt_token"].long()[:, -50:], ref["prompt_feat"][:, -100:], noise.frames(0, 100)
        )
        mel = flow_mel(
            model.s3gen,
            prompt,
            ref["embedding"],
            torch.arange(100, 130).unsqueeze(0),
            noise.frames(100, 160),
            finalize=True,
            n_timesteps=model.flow_timesteps,
            meanflow=model.meanflow,
        )
        torch.manual_seed(0)  # HiFT draws its source noise from the global generator
        with torch.inference_mode():
            wav, _ = model.s3gen.mel2wav.inference(
                speech_feat=mel, cache_source=torch.zeros(1, 1, 0)
            )
        outputs.append((logits, mel, wav))
    (logits_a, mel_a, wav_a), (logits_b, mel_b, wav_b) = outputs
    assert close(logits_b, logits_a)
    assert close(mel_b, mel_a)
    assert float((wav_b - wav_a).abs().max()) <= 1e-4 * float(wav_a.abs().max())
