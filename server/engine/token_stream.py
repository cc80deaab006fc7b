"""T3 speech-token generation, one token at a time, with the KV cache.

Each generator reproduces upstream's non-streaming loop operation for operation
(`T3.inference_turbo` and `T3.inference` in chatterbox 0.1.7, the latter with the multilingual
model's alignment checks), so under the same seed it yields exactly the tokens upstream
returns. Randomness comes from the request's own
`torch.Generator`, never the global one, so concurrent requests cannot perturb each other.
Closing a generator drops its KV cache.

Logits are cast to float32 before any processing, whatever T3's dtype (`--dtype`), so the
repetition penalty, temperature, top-k/top-p/min-p cut-offs, softmax and sampling compute in
float32: in bfloat16, top-p's running sum of probabilities (steps of 0.004 near 1) would stop
growing long before it adds up the thousands of small ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from server.engine.alignment import AlignmentGuard, aligned_attention
from server.engine.kv_cache import GrowingCache
from server.engine.sampling import SamplingParams


def _as_ids(tokens: torch.Tensor) -> torch.LongTensor:
    # transformers annotates processors with LongTensor, which torch's stubs never produce.
    return tokens  # type: ignore[return-value]


def _sample(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.multinomial(probs, num_samples=1, generator=generator)


def turbo_processors(params: SamplingParams) -> LogitsProcessorList:
    """The list upstream `inference_turbo` builds, in the same order."""
    processors = LogitsProcessorList()
    if params.temperature > 0 and params.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(params.temperature))
    if params.top_k > 0:
        processors.append(TopKLogitsWarper(params.top_k))
    if params.top_p < 1.0:
        processors.append(TopPLogitsWarper(params.top_p))
    if params.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    return processors


@torch.inference_mode()
def turbo_speech_tokens(
    t3: Any,
    t3_cond: Any,
    text_tokens: torch.Tensor,
    params: SamplingParams,
    generator: torch.Generator,
    max_new_tokens: int,
) -> Iterator[int]:
    """Speech tokens of the Turbo (GPT-2) T3, ending before the stop token or at the cap."""
    processors = turbo_processors(params)

    stop_token = t3.hp.stop_speech_token
    start = t3.hp.start_speech_token * torch.ones_like(text_tokens[:, :1])
    embeds, _ = t3.prepare_input_embeds(
        t3_cond=t3_cond, text_tokens=text_tokens, speech_tokens=start, cfg_weight=0.0
    )
    out = t3.tfmr(inputs_embeds=embeds, past_key_values=GrowingCache(), use_cache=True)
    past = out.past_key_values
    logits = t3.speech_head(out[0][:, -1:]).float()
    token = _sample(F.softmax(processors(_as_ids(start), logits[:, -1, :]), dim=-1), generator)
    generated = [token]
    produced = 0
    while True:
        if int(token) == stop_token:
            return
        yield int(token)
        produced += 1
        if produced >= max_new_tokens:
            return
        out = t3.tfmr(inputs_embeds=t3.speech_emb(token), past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = t3.speech_head(out[0]).float()
        processed = processors(_as_ids(torch.cat(generated, dim=1)), logits[:, -1, :])
        if torch.all(processed == -float("inf")):
            return
        token = _sample(F.softmax(processed, dim=-1), generator)
        generated.append(token)


@torch.inference_mode()
def original_speech_tokens(
    t3: Any,
    t3_cond: Any,
    text_tokens: torch.Tensor,
    params: SamplingParams,
    generator: torch.Generator,
    max_new_tokens: int,
    *,
    alignment_checks: bool = False,
) -> Iterator[int]:
    """Speech tokens of the original or multilingual (Llama) T3 with classifier-free guidance.

    With cfg_weight > 0 the batch holds the conditional row and an unconditional row (text
    embeddings zeroed) mixed as cond + w * (cond - uncond). Upstream crashes on cfg_weight 0;
    here it simply runs the conditional row alone. `alignment_checks`: the multilingual
    model's end-of-speech checks (`alignment.py`), on the conditional row.
    """
    use_cfg = params.cfg_weight > 0.0
    text_tokens = text_tokens.reshape(1, -1).to(dtype=torch.long, device=t3.device)
    if use_cfg:
        text_tokens = torch.cat([text_tokens, text_tokens], dim=0)
    batch = text_tokens.size(0)
    bos = torch.tensor([[t3.hp.start_speech_token]], dtype=torch.long, device=t3.device)
    # Upstream passes BOS as the initial speech token *and* appends a BOS embedding after it;
    # both are kept so the prompt, and hence every token, matches upstream exactly.
    embeds, cond_length = t3.prepare_input_embeds(
        t3_cond=t3_cond,
        text_tokens=text_tokens,
        speech_tokens=bos.expand(batch, 1),
        cfg_weight=params.cfg_weight,
    )
    bos_embed = t3.speech_emb(bos) + t3.speech_pos_emb.get_fixed_embedding(0)
    inputs = torch.cat([embeds, bos_embed.expand(batch, -1, -1)], dim=1)
    length = inputs.shape[1]
    guard = None
    if alignment_checks:
        text_end = cond_length + text_tokens.shape[1]
        guard = AlignmentGuard(cond_length, text_end, t3.hp.stop_speech_token)
    # The queries the checks read: the two start positions first, then each new token's.
    queries = torch.arange(length - 2, length, device=t3.device)

    repetition = RepetitionPenaltyLogitsProcessor(penalty=float(params.repetition_penalty))
    min_p = MinPLogitsWarper(min_p=params.min_p)
    top_p = TopPLogitsWarper(top_p=params.top_p)
    stop_token = t3.hp.stop_speech_token
    generated = bos

    out = _llama_step(t3, inputs, past=GrowingCache())
    past = out.past_key_values
    for step in range(max_new_tokens):
        logits = t3.speech_head(out.hidden_states[-1])[:, -1, :].float()
        if use_cfg:
            cond, uncond = logits[0:1], logits[1:2]
            logits = cond + torch.as_tensor(
                params.cfg_weight, device=cond.device, dtype=cond.dtype
            ) * (cond - uncond)
        if guard is not None:
            attention = aligned_attention(t3, out.hidden_states, past, 0, 0, queries)
            logits = guard.step(attention, logits, int(generated[0, -1]))
            queries = torch.tensor([length + step], device=t3.device)
        ids = _as_ids(generated)
        logits = repetition(ids, logits)
        if params.temperature != 1.0:
            logits = logits / params.temperature
        logits = top_p(ids, min_p(ids, logits))
        token = _sample(torch.softmax(logits, dim=-1), generator)
        generated = torch.cat([generated, token], dim=1)
        if int(token) == stop_token:
            return
        yield int(token)
        embed = t3.speech_emb(token) + t3.speech_pos_emb.get_fixed_embedding(step + 1)
        out = _llama_step(t3, embed.expand(batch, -1, -1), past=past)
        past = out.past_key_values


def _llama_step(t3: Any, inputs_embeds: torch.Tensor, past: Any) -> Any:
    # The same call upstream's T3HuggingfaceBackend makes; output_attentions is kept because it
    # selects the attention kernel and therefore the exact floating-point results.
    return t3.tfmr(
        inputs_embeds=inputs_embeds,
        past_key_values=past,
        use_cache=True,
        output_attentions=True,
        output_hidden_states=True,
        return_dict=True,
    )
