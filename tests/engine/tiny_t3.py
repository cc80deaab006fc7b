"""Tiny T3s built from upstream's configurations, with random weights and no checkpoint: for
tests of the batch's bookkeeping, which does not depend on the model's size."""

from __future__ import annotations

from typing import Any
from unittest import mock

import torch

from server.engine.loading import ModelVariant, t3_config
from tests.conftest import TEST_DEVICE

# What makes upstream's configurations tiny; the Llama keeps the layers and heads that the
# alignment checks read (alignment.ALIGNED_HEADS).
TINY = {
    "gpt2": {"n_embd": 64, "hidden_size": 64, "n_head": 4, "n_layer": 2},
    "llama": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 14,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "head_dim": 4,
    },
}


def tiny_t3(variant: ModelVariant) -> Any:
    """`variant`'s T3 (the original and multilingual models': a Llama, Turbo's: a GPT-2),
    64 wide, on the test device."""
    from chatterbox.models.t3 import T3, llama_configs

    hp = t3_config(variant)
    config = llama_configs.LLAMA_CONFIGS[hp.llama_config_name]
    name = f"tiny-{hp.llama_config_name}"
    tiny = {**config, **TINY[config["model_type"]]}
    with mock.patch.dict(llama_configs.LLAMA_CONFIGS, {name: tiny}):
        hp.llama_config_name = name
        hp.use_perceiver_resampler = False  # 1024 wide whatever the backbone
        torch.manual_seed(0)
        t3 = T3(hp)
    torch.nn.Module.eval(t3)
    return t3.to(TEST_DEVICE)


def conditioning() -> Any:
    """A voice's T3 conditioning: a speaker embedding and a few prompt tokens."""
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    generator = torch.Generator().manual_seed(1)
    return T3Cond(
        speaker_emb=torch.randn(1, 256, generator=generator),
        cond_prompt_speech_tokens=torch.randint(0, 6561, (1, 8), generator=generator),
        emotion_adv=0.5 * torch.ones(1, 1, 1),
    ).to(device=TEST_DEVICE)


def text_tokens(t3: Any, length: int) -> torch.Tensor:
    """`length` text tokens (starting and ending as the Llama T3 wants)."""
    hp = t3.hp
    tokens = torch.randint(1, 200, (1, length), generator=torch.Generator().manual_seed(length))
    if not t3.is_gpt:
        tokens[0, 0], tokens[0, -1] = hp.start_text_token, hp.stop_text_token
    return tokens.to(TEST_DEVICE)
