"""Token generators reproduce upstream's non-streaming calls token for token."""

from __future__ import annotations

import pytest
import torch

from server.engine.conditionals import builtin_voice
from server.engine.engine import EngineConfig, StreamingEngine, SynthesisRequest
from server.engine.loading import LoadedModel
from server.engine.sampling import SamplingParams
from server.engine.token_stream import original_speech_tokens, turbo_speech_tokens

TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.mark.model
@pytest.mark.parametrize("seed", [0, 1234])
def test_turbo_tokens_match_upstream_inference_turbo(turbo_model: LoadedModel, seed: int) -> None:
    from chatterbox.tts_turbo import punc_norm

    voice = builtin_voice(turbo_model)
    assert voice is not None
    params = SamplingParams(temperature=0.8, top_k=1000, top_p=0.95, repetition_penalty=1.2)
    text_tokens = turbo_model.text_to_tokens(punc_norm(TEXT))
    steps = 24

    torch.manual_seed(seed)
    t3_cond, _ = voice.for_request(0.5, turbo_model.device)
    upstream = turbo_model.t3.inference_turbo(
        t3_cond,
        text_tokens,
        temperature=0.8,
        top_k=1000,
        top_p=0.95,
        repetition_penalty=1.2,
        max_gen_len=steps,
    )[0].tolist()

    t3_cond, _ = voice.for_request(0.5, turbo_model.device)
    # Upstream samples on the model's device from its global generator, seeded above: ours
    # draws from a generator of that device, seeded alike.
    generator = torch.Generator(device=turbo_model.device).manual_seed(seed)
    ours = list(
        turbo_speech_tokens(turbo_model.t3, t3_cond, text_tokens, params, generator, steps + 1)
    )
    assert len(upstream) == steps + 1  # random weights never say EOS
    assert ours == upstream


@pytest.mark.model
@pytest.mark.parametrize("cfg_weight", [0.5, 0.3])
def test_original_tokens_match_upstream_inference_with_cfg(
    original_model: LoadedModel, cfg_weight: float
) -> None:
    from chatterbox.tts import punc_norm

    voice = builtin_voice(original_model)
    assert voice is not None
    t3 = original_model.t3
    text_tokens = original_model.text_to_tokens(punc_norm(TEXT))
    text_tokens = torch.nn.functional.pad(text_tokens, (1, 0), value=t3.hp.start_text_token)
    text_tokens = torch.nn.functional.pad(text_tokens, (0, 1), value=t3.hp.stop_text_token)
    steps = 12
    params = SamplingParams(
        temperature=0.8,
        top_p=0.95,
        min_p=0.05,
        repetition_penalty=1.2,
        cfg_weight=cfg_weight,
        exaggeration=0.7,
    )

    torch.manual_seed(7)
    t3_cond, _ = voice.for_request(0.7, original_model.device)
    upstream = t3.inference(
        t3_cond=t3_cond,
        text_tokens=torch.cat([text_tokens, text_tokens], dim=0),
        max_new_tokens=steps,
        temperature=0.8,
        cfg_weight=cfg_weight,
        repetition_penalty=1.2,
        min_p=0.05,
        top_p=0.95,
    )[0].tolist()

    t3_cond, _ = voice.for_request(0.7, original_model.device)
    generator = torch.Generator(device=original_model.device).manual_seed(7)
    ours = list(original_speech_tokens(t3, t3_cond, text_tokens, params, generator, steps))
    assert ours == upstream


@pytest.mark.model
def test_original_without_cfg_runs_a_single_row(original_model: LoadedModel) -> None:
    engine = StreamingEngine(original_model, EngineConfig(watermark=False))
    request = SynthesisRequest(TEXT, SamplingParams(cfg_weight=0.0), seed=3, max_new_tokens=6)
    tokens = engine.speech_tokens(request)
    assert len(tokens) == 6 and all(
        0 <= t < original_model.t3.hp.speech_tokens_dict_size for t in tokens
    )
